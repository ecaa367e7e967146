import RaftAPI
import RaftClient

extension RaftClient {
    /// Creates a repository; a creation whose outcome is unknown (leadership moved under
    /// load) is tried again, up to five times: it commits into the same partition or finds
    /// ALREADY_EXISTS, which then means the earlier attempt did it.
    func createRepositoryRetrying(_ path: String) async throws {
        for attempt in 1...5 {
            do {
                _ = try await createRepository(path)
                return
            } catch let error as RaftClientError where error.code == .alreadyExists && attempt > 1 {
                return
            } catch let error as RaftClientError
                where [.unknownOutcome, .unavailable].contains(error.code) && attempt < 5
            {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}

/// Runs `body` for every index in `0..<count`, at most `width` at a time.
func concurrently(
    _ count: Int, width: Int = 64, _ body: @escaping @Sendable (Int) async throws -> Void
)
    async throws
{
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        while next < min(width, count) {
            let i = next
            group.addTask { try await body(i) }
            next += 1
        }
        while try await group.next() != nil {
            if next < count {
                let i = next
                group.addTask { try await body(i) }
                next += 1
            }
        }
    }
}

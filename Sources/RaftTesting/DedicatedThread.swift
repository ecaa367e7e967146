import Foundation

/// Runs `body` on a new OS thread and waits for it without holding a thread of Swift's
/// cooperative pool.
///
/// The pool has one thread per core (two on the CI machine). A synchronous test that runs
/// for a minute (simulator seeds, a child process killed again and again) holds one of them
/// the whole time; two such tests hold all of them, and every async test of the process
/// stops making progress meanwhile: a cluster test's wait loop did not run for tens of
/// seconds and gave up while its cluster had long finished (issue 9, the flaky test).
public func onDedicatedThread<T: Sendable>(
    _ name: String = "raftd-test-work", _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.name = name
        thread.stackSize = 16 << 20
        thread.start()
    }
}

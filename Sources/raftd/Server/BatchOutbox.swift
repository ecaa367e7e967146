import RaftAPI
import Synchronization

/// The batch streams open on this node, so that a shutdown can end them.
final class BatchStreams: Sendable {
    private struct State {
        var readers: [UInt64: Task<Void, Never>] = [:]
        var next: UInt64 = 0
        var closed = false
    }
    private let state = Mutex(State())

    func add(_ reader: Task<Void, Never>) -> UInt64 {
        let (token, closed) = state.withLock { state in
            state.next += 1
            if !state.closed { state.readers[state.next] = reader }
            return (state.next, state.closed)
        }
        if closed { reader.cancel() }
        return token
    }

    func remove(_ token: UInt64) { _ = state.withLock { $0.readers.removeValue(forKey: token) } }

    /// Whether the node is shutting down: items read now are answered UNAVAILABLE (not
    /// run), so a client knows they are safe to send elsewhere.
    var draining: Bool { state.withLock { $0.closed } }

    /// Starts the shutdown of every stream: for `grace`, items still arriving are answered
    /// UNAVAILABLE; then reading stops. What was admitted is answered either way.
    func closeAll(grace: Duration = .seconds(2)) async {
        state.withLock { $0.closed = true }
        try? await Task.sleep(for: grace)
        let readers = state.withLock { state in
            defer { state.readers = [:] }
            return Array(state.readers.values)
        }
        for reader in readers { reader.cancel() }
    }
}

/// Answers of one batch stream waiting to be written, and the count of requests in flight.
final class BatchOutbox: Sendable {
    private struct State {
        var ready: [(result: Raftd_V1_BatchResult, admitted: Bool)] = []
        /// Admitted and not yet answered (posted).
        var running = 0
        /// Admitted and not yet written: the stream's outstanding requests.
        var unwritten = 0
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
        var drainWaiter: CheckedContinuation<Void, Never>?
        var roomWaiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())
    /// A response message carries at most about this many bytes of results.
    static let maximumMessageBytes = 2 << 20

    /// Returns once every admitted request is answered.
    func drained() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state in
                if state.running == 0 { return true }
                state.drainWaiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Waits while the stream holds `limit` requests and answers not yet written (a client
    /// that does not read its answers stops being read).
    func waitForRoom(_ limit: Int) async {
        await withCheckedContinuation { continuation in
            let room = state.withLock { state in
                if state.unwritten + state.ready.count < limit { return true }
                state.roomWaiter = continuation
                return false
            }
            if room { continuation.resume() }
        }
    }

    func admit(_ bound: Int) -> Bool {
        state.withLock { state in
            guard state.unwritten < bound else { return false }
            state.unwritten += 1
            state.running += 1
            return true
        }
    }

    func post(_ result: Raftd_V1_BatchResult, admitted: Bool) {
        let (waiter, drain): (CheckedContinuation<Void, Never>?, CheckedContinuation<Void, Never>?) =
            state.withLock { state in
                state.ready.append((result, admitted))
                var drain: CheckedContinuation<Void, Never>?
                if admitted {
                    state.running -= 1
                    if state.running == 0 {
                        drain = state.drainWaiter
                        state.drainWaiter = nil
                    }
                }
                defer { state.waiter = nil }
                return (state.waiter, drain)
            }
        waiter?.resume()
        drain?.resume()
    }

    /// The next response's results (about `maximumMessageBytes` at most, at least one),
    /// waiting for one; nil once finished and drained. `written` must follow the write.
    func next() async -> (results: [Raftd_V1_BatchResult], admitted: Int)? {
        while true {
            let taken: (results: [Raftd_V1_BatchResult], admitted: Int)?? = state.withLock { state in
                if !state.ready.isEmpty {
                    var bytes = 0
                    var count = 0
                    for entry in state.ready {
                        bytes += Self.estimatedBytes(entry.result)
                        count += 1
                        if bytes >= Self.maximumMessageBytes { break }
                    }
                    let taken = state.ready.prefix(count)
                    state.ready.removeFirst(count)
                    return .some((taken.map(\.result), taken.filter(\.admitted).count))
                }
                if state.finished { return .some(nil) }
                return .none
            }
            if let taken { return taken }
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state in
                    if !state.ready.isEmpty || state.finished { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }

    /// `admitted` answers left the process: room for as many new requests.
    func written(_ admitted: Int) {
        let room = state.withLock { state in
            state.unwritten -= admitted
            defer { state.roomWaiter = nil }
            return state.roomWaiter
        }
        room?.resume()
    }

    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    private static func estimatedBytes(_ result: Raftd_V1_BatchResult) -> Int {
        if case .listRefs(let refs) = result.result {
            return 32 + refs.references.reduce(0) { $0 + $1.name.utf8.count + 48 }
        }
        if case .error(let error) = result.result { return 32 + error.message.utf8.count }
        return 32
    }
}

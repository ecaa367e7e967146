import GRPCCore
import GRPCNIOTransportHTTP2
import RaftAPI
import Synchronization

/// One endpoint: its gRPC client (connections run in a task), the typed service clients
/// and the batch stream.
final class Connection: Sendable {
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    let refs: Raftd_V1_RefService.Client<HTTP2ClientTransport.Posix>
    let repositories: Raftd_V1_RepositoryService.Client<HTTP2ClientTransport.Posix>
    let pools: Raftd_V1_ObjectPoolService.Client<HTTP2ClientTransport.Posix>
    let cluster: Raftd_V1_ClusterService.Client<HTTP2ClientTransport.Posix>
    let batch: BatchStream
    let metadata: Metadata
    /// Every unary call's options: a call with no answer ends after the client's deadline
    /// (a server that accepted it and hangs cannot hold the caller; keepalive only notices
    /// dead connections).
    let options: CallOptions
    private let runner: Task<Void, Never>

    init(host: String, port: Int, token: String, tls: RaftClient.TLS?, timeout: Duration) throws {
        var configuration = HTTP2ClientTransport.Posix.Config.defaults
        var security = HTTP2ClientTransport.Posix.TransportSecurity.plaintext
        if let tls {
            // The server's certificate must chain to the CA and name the address dialled.
            security = .tls { config in
                config.trustRoots = .certificates([.file(path: tls.caFile, format: .pem)])
            }
        }
        // A half-open connection (a peer's machine gone) is noticed in seconds, not when
        // TCP gives up.
        configuration.connection.keepalive = .init(time: .seconds(5), timeout: .seconds(5), allowWithoutCalls: true)
        let client = GRPCClient(
            transport: try .http2NIOPosix(
                target: .ipv4(address: host, port: port), transportSecurity: security, config: configuration))
        self.client = client
        runner = Task { try? await client.runConnections() }
        refs = Raftd_V1_RefService.Client(wrapping: client)
        repositories = Raftd_V1_RepositoryService.Client(wrapping: client)
        pools = Raftd_V1_ObjectPoolService.Client(wrapping: client)
        cluster = Raftd_V1_ClusterService.Client(wrapping: client)
        metadata = ["authorization": "Bearer \(token)"]
        var options = CallOptions.defaults
        options.timeout = timeout
        self.options = options
        batch = BatchStream(refs: refs, metadata: metadata)
    }

    func close() {
        batch.close()
        client.beginGracefulShutdown()
    }
}

/// The batch stream to one endpoint: concurrent callers' requests travel together. A
/// message goes out at once when none is being written; while one is, new requests gather
/// for the next. Answers come back in any order and are matched by ID. When the stream
/// breaks, requests already sent fail with UNKNOWN_OUTCOME (they may have committed) and
/// those not sent with UNAVAILABLE (safe to retry); the next request opens a new stream.
final class BatchStream: Sendable {
    private struct State {
        var queue: [Raftd_V1_BatchItem] = []
        var sent: Set<UInt64> = []
        var waiting: [UInt64: CheckedContinuation<Raftd_V1_BatchResult, any Error>] = [:]
        var running = false
        var closed = false
        /// The stream's producer was cancelled (the RPC ended).
        var cancelled = false
        var wake: CheckedContinuation<Void, Never>?
        var nextID: UInt64 = 1
    }
    private let state = Mutex(State())
    private let refs: Raftd_V1_RefService.Client<HTTP2ClientTransport.Posix>
    private let metadata: Metadata
    /// Items per message at most (the server bounds outstanding requests per stream).
    static let maximumItemsPerMessage = 512

    init(refs: Raftd_V1_RefService.Client<HTTP2ClientTransport.Posix>, metadata: Metadata) {
        self.refs = refs
        self.metadata = metadata
    }

    func submit(_ request: Raftd_V1_BatchItem.OneOf_Request) async throws -> Raftd_V1_BatchResult {
        try await withCheckedThrowingContinuation { continuation in
            let (start, wake, refusal): (Bool, CheckedContinuation<Void, Never>?, RaftClientError?) = state.withLock {
                state in
                if state.closed {
                    return (false, nil, RaftClientError(code: .unavailable, message: "the client is closed"))
                }
                var item = Raftd_V1_BatchItem()
                item.id = state.nextID
                item.request = request
                state.nextID += 1
                state.waiting[item.id] = continuation
                state.queue.append(item)
                let start = !state.running
                state.running = true
                let wake = state.wake
                state.wake = nil
                return (start, wake, nil)
            }
            if let refusal { return continuation.resume(throwing: refusal) }
            wake?.resume()
            if start { Task { await run() } }
        }
    }

    func close() {
        let wake = state.withLock { state in
            state.closed = true
            defer { state.wake = nil }
            return state.wake
        }
        wake?.resume()
    }

    /// Waits for queued items (nil: closed, or the task was cancelled) and takes them.
    private func takeQueued() async -> [Raftd_V1_BatchItem]? {
        while true {
            let taken: [Raftd_V1_BatchItem]?? = state.withLock { state in
                if state.closed || state.cancelled { return .some(nil) }
                guard !state.queue.isEmpty else { return .none }
                // About 2 MiB per message at most (the server takes 4): at least one item.
                var count = 0
                var bytes = 0
                for item in state.queue.prefix(Self.maximumItemsPerMessage) {
                    bytes += Self.estimatedBytes(item)
                    if count > 0 && bytes > 2 << 20 { break }
                    count += 1
                }
                let items = Array(state.queue.prefix(count))
                state.queue.removeFirst(count)
                for item in items { state.sent.insert(item.id) }
                return .some(items)
            }
            if let taken { return taken }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state in
                        if !state.queue.isEmpty || state.closed || state.cancelled { return true }
                        state.wake = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                let wake = state.withLock { state in
                    state.cancelled = true
                    defer { state.wake = nil }
                    return state.wake
                }
                wake?.resume()
            }
        }
    }

    private static func estimatedBytes(_ item: Raftd_V1_BatchItem) -> Int {
        guard case .updateReferences(let request) = item.request else { return 128 }
        return 128 + request.pack.count + request.setValues.reduce(0) { $0 + $1.key.utf8.count + $1.value.count }
            + request.updates.count * 128
    }

    private func resolve(_ result: Raftd_V1_BatchResult) {
        let continuation = state.withLock { state in
            state.sent.remove(result.id)
            return state.waiting.removeValue(forKey: result.id)
        }
        continuation?.resume(returning: result)
    }

    private func run() async {
        var failure = "the batch stream ended"
        do {
            try await refs.batch(
                metadata: metadata,
                requestProducer: { [self] writer in
                    while let items = await takeQueued() {
                        var message = Raftd_V1_BatchRequest()
                        message.items = items
                        try await writer.write(message)
                    }
                },
                onResponse: { [self] response in
                    for try await message in response.messages {
                        for result in message.results { resolve(result) }
                    }
                })
        } catch {
            failure = "\(error)"
        }
        // Fail what is left: sent requests may have committed; queued ones were not sent.
        // The next request opens a new stream (after the caller's back-off).
        typealias Waiter = CheckedContinuation<Raftd_V1_BatchResult, any Error>
        let (sent, unsent): ([Waiter], [Waiter]) = state.withLock { state in
            var sent: [Waiter] = []
            for id in state.sent { if let c = state.waiting.removeValue(forKey: id) { sent.append(c) } }
            let unsent = Array(state.waiting.values)
            state.sent = []
            state.waiting = [:]
            state.queue = []
            state.running = false
            state.cancelled = false
            return (sent, unsent)
        }
        for continuation in sent {
            continuation.resume(
                throwing: RaftClientError(code: .unknownOutcome, message: "the stream broke after sending: \(failure)"))
        }
        for continuation in unsent {
            continuation.resume(throwing: RaftClientError(code: .unavailable, message: "not sent: \(failure)"))
        }
    }
}

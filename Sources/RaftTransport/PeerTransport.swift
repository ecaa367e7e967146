import Crypto
import Logging
import NIOCore
import NIOPosix
import RaftEngine
import Synchronization

/// What crossed the peer transport, for metrics.
public struct PeerTransportStatistics: Sendable, Equatable {
    public var framesSent: UInt64 = 0
    public var framesReceived: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Frames `send` refused: no connection to the peer, or its queue over the bound.
    public var framesDropped: UInt64 = 0
    public var bulkRequestsSent: UInt64 = 0
    public var bulkRequestsServed: UInt64 = 0
    /// Bulk requests refused because the peer already had the bound in service here.
    public var bulkRequestsRefused: UInt64 = 0
    public var bulkBytesReceived: UInt64 = 0
    public var connectionsEstablished: UInt64 = 0
    /// Connections refused or closed, by cause (`RefusalCause` labels).
    public var refusals: [String: UInt64] = [:]
}

/// The network transport between raftd nodes (SwiftNIO TCP). Per pair of nodes there is one
/// connection for consensus frames and one for bulk data, both dialled by the node with
/// the smaller ID and used in both directions, each authenticated by the handshake in
/// `PeerHandshake`. `send` never blocks: a frame for a peer that is not connected, or whose
/// queue is over its byte bound, is dropped (Raft sends again) and `send` returns false.
public final class PeerTransport: Transport, Sendable {
    public let configuration: PeerTransportConfiguration
    let logger: Logger
    /// The handshake's HMAC key (made per use: `SymmetricKey` is not `Sendable`).
    var key: SymmetricKey { SymmetricKey(data: configuration.secret) }
    private let group: MultiThreadedEventLoopGroup

    private struct State {
        var receiver: (any FrameReceiver)?
        var frames: [NodeID: PeerConnection] = [:]
        var bulk: [NodeID: PeerConnection] = [:]
        var server: (any Channel)?
        var dialers: [Task<Void, Never>] = []
        var dialed: [ObjectIdentifier: any Channel] = [:]
        var stopped = false
        /// Where each peer listens (from the configuration; `setAddress` changes it).
        var addresses: [NodeID: PeerAddress] = [:]
        var nonces = RecentNonces(capacity: 4096)
        /// Refusal log lines already written, by peer and cause.
        var logged: Set<String> = []
    }
    private let state = Mutex(State())
    private let stats = Mutex(PeerTransportStatistics())

    public init(
        configuration: PeerTransportConfiguration, logger: Logger = Logger(label: "raftd.transport")
    )
        throws(PeerTransportError)
    {
        if let problem = configuration.validate() { throw .configuration(problem) }
        self.configuration = configuration
        self.logger = logger
        state.withLock { $0.addresses = configuration.peers }
        group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
    }

    /// Binds the listening socket and starts dialling the peers with larger IDs. Frames and
    /// bulk requests that arrive go to `receiver` (the node host, already started).
    public func start(receiver: any FrameReceiver) async throws(PeerTransportError) {
        let server: any Channel
        do {
            server = try await bind(receiver).get()
        } catch {
            throw bindError(error)
        }
        started(server)
    }

    /// `start` for callers outside Swift concurrency (the in-process cluster harness).
    @available(*, noasync, message: "use start(receiver:)")
    public func startBlocking(receiver: any FrameReceiver) throws(PeerTransportError) {
        let server: any Channel
        do {
            server = try bind(receiver).wait()
        } catch {
            throw bindError(error)
        }
        started(server)
    }

    private func bind(_ receiver: any FrameReceiver) -> EventLoopFuture<any Channel> {
        state.withLock { $0.receiver = receiver }
        let maximum = configuration.maximumMessageBytes
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(PeerMessageDecoder(maximumBytes: maximum)),
                        PeerChannelHandler(transport: self, role: .acceptor, handshake: nil))
                }
            }
            .bind(host: configuration.listen.host, port: configuration.listen.port)
    }

    private func bindError(_ error: any Error) -> PeerTransportError {
        .bind("cannot listen on \(configuration.listen) for peers: \(error). Is another process using the port?")
    }

    private func started(_ server: any Channel) {
        var tasks: [Task<Void, Never>] = []
        for peer in configuration.peers.keys where configuration.nodeID < peer {
            for kind in [ConnectionKind.frames, .bulk] {
                tasks.append(Task { [self] in await dial(peer, kind) })
            }
        }
        state.withLock {
            $0.server = server
            $0.dialers = tasks
        }
        logger.info(
            "peer transport listening",
            metadata: [
                "address": "\(configuration.listen.host):\(listeningPort)", "peers": "\(configuration.peers.count)",
            ]
        )
    }

    /// The port the transport listens on (useful when configured with port 0).
    public var listeningPort: Int {
        state.withLock { $0.server?.localAddress?.port } ?? configuration.listen.port
    }

    /// Closes every connection and the listener; bulk requests in flight fail as
    /// unreachable. The receiver gets nothing after this returns.
    public func stop() async {
        let (server, dialers, channels) = beginStop()
        for task in dialers { task.cancel() }
        try? await server?.close()
        for channel in channels { try? await channel.close() }
        for task in dialers { await task.value }
        try? await group.shutdownGracefully()
    }

    /// `stop` for callers outside Swift concurrency.
    @available(*, noasync, message: "use stop()")
    public func stopBlocking() {
        let (server, dialers, channels) = beginStop()
        for task in dialers { task.cancel() }
        try? server?.close().wait()
        for channel in channels { try? channel.close().wait() }
        try? group.syncShutdownGracefully()
    }

    private func beginStop() -> ((any Channel)?, [Task<Void, Never>], [any Channel]) {
        state.withLock { state in
            state.stopped = true
            state.receiver = nil
            let channels =
                Array(state.frames.values.map(\.channel)) + Array(state.bulk.values.map(\.channel))
                + Array(state.dialed.values)
            defer {
                state.frames = [:]
                state.bulk = [:]
                state.dialed = [:]
            }
            return (state.server, state.dialers, channels)
        }
    }

    /// Changes where `peer` (one of the configured peers) is dialled, from the next attempt
    /// on; its current connections stay until they close.
    public func setAddress(of peer: NodeID, to address: PeerAddress) {
        state.withLock { state in
            if state.addresses[peer] != nil { state.addresses[peer] = address }
        }
    }

    /// Peers with an authenticated frame connection now.
    public var connectedPeers: [NodeID] { state.withLock { Array($0.frames.keys).sorted() } }

    /// Peers with an authenticated bulk connection now.
    public var bulkConnectedPeers: [NodeID] { state.withLock { Array($0.bulk.keys).sorted() } }

    public var statistics: PeerTransportStatistics { stats.withLock { $0 } }

    // MARK: Transport

    public func send(_ frame: PeerFrame) -> Bool {
        guard let connection = state.withLock({ $0.frames[frame.to] }) else {
            stats.withLock { $0.framesDropped += 1 }
            return false
        }
        let body = PeerWire.encode(frame)
        let size = body.count + 5
        guard size <= configuration.maximumMessageBytes else {
            logger.error(
                "a frame over the message bound was not sent",
                metadata: ["peer": "\(frame.to)", "bytes": "\(size)", "messages": "\(frame.messages.count)"])
            stats.withLock { $0.framesDropped += 1 }
            return false
        }
        let queued = connection.queuedBytes.add(size, ordering: .relaxed).newValue
        if queued > configuration.sendQueueBytes {
            connection.queuedBytes.subtract(size, ordering: .relaxed)
            stats.withLock { $0.framesDropped += 1 }
            return false
        }
        connection.write(.frame, body) { _ in connection.queuedBytes.subtract(size, ordering: .relaxed) }
        stats.withLock {
            $0.framesSent += 1
            $0.messagesSent += UInt64(frame.messages.count)
            $0.bytesSent += UInt64(size)
        }
        return true
    }

    public func request(_ request: BulkRequest, to node: NodeID) async throws(BulkError) -> BulkResponse {
        guard let connection = state.withLock({ $0.bulk[node] }) else { throw .unreachable(node) }
        stats.withLock { $0.bulkRequestsSent += 1 }
        switch await connection.request(PeerWire.encode(request), bound: configuration.bulkRequestsInFlight) {
        case .success(let response): return response
        case .failure(let error): throw error
        }
    }

    // MARK: connection handlers' calls

    func freshNonce(_ nonce: [UInt8]) -> Bool { state.withLock { $0.nonces.insert(nonce) } }

    func register(_ connection: PeerConnection) {
        let replaced: PeerConnection? = state.withLock { state in
            if state.stopped { return connection }
            switch connection.kind {
            case .frames:
                defer { state.frames[connection.peer] = connection }
                return state.frames[connection.peer]
            case .bulk:
                defer { state.bulk[connection.peer] = connection }
                return state.bulk[connection.peer]
            }
        }
        if let replaced, replaced !== connection {
            replaced.channel.close(promise: nil)
        } else if replaced === connection {
            connection.channel.close(promise: nil)
            return
        }
        stats.withLock { $0.connectionsEstablished += 1 }
        logger.info("peer connected", metadata: ["peer": "\(connection.peer)", "connection": "\(connection.kind)"])
    }

    func unregister(_ connection: PeerConnection) {
        let removed: Bool = state.withLock { state in
            switch connection.kind {
            case .frames where state.frames[connection.peer] === connection:
                state.frames[connection.peer] = nil
                return true
            case .bulk where state.bulk[connection.peer] === connection:
                state.bulk[connection.peer] = nil
                return true
            default:
                return false
            }
        }
        if removed {
            logger.info(
                "peer disconnected", metadata: ["peer": "\(connection.peer)", "connection": "\(connection.kind)"])
        }
    }

    func deliver(_ frame: PeerFrame, bytes: Int) {
        stats.withLock {
            $0.framesReceived += 1
            $0.messagesReceived += UInt64(frame.messages.count)
            $0.bytesReceived += UInt64(bytes)
        }
        state.withLock { $0.receiver }?.receive(frame)
    }

    func serve(_ request: BulkRequest, id: UInt64, on connection: PeerConnection) {
        guard let receiver = state.withLock({ $0.receiver }) else { return }
        let bound = configuration.bulkRequestsServed
        guard connection.serving.add(1, ordering: .relaxed).newValue <= bound else {
            connection.serving.subtract(1, ordering: .relaxed)
            stats.withLock { $0.bulkRequestsRefused += 1 }
            connection.write(
                .bulkResponse, PeerConnection.u64(id),
                PeerWire.encode(BulkResponse.refused("busy: \(bound) bulk requests in service for this node")))
            return
        }
        stats.withLock { $0.bulkRequestsServed += 1 }
        Task {
            let response = await receiver.serve(request, from: connection.peer)
            connection.serving.subtract(1, ordering: .relaxed)
            connection.write(.bulkResponse, PeerConnection.u64(id), PeerWire.encode(response))
        }
    }

    func countBulkBytes(_ count: Int) { stats.withLock { $0.bulkBytesReceived += UInt64(count) } }

    /// Counts a refusal and logs it once per peer and cause (a peer retrying with the wrong
    /// secret every second would otherwise flood the log).
    func refused(cause: RefusalCause, peer: String, detail: String) {
        stats.withLock { $0.refusals[cause.rawValue, default: 0] += 1 }
        // Acceptors identify a peer by its claimed node ID and address; the port of an
        // address changes with each connection, so only the host part keys the log line.
        let key = "\(peer.split(separator: ":").first ?? "")|\(cause.rawValue)"
        let first: Bool = state.withLock { state in
            guard state.logged.count < 4096 else { return false }
            return state.logged.insert(key).inserted
        }
        guard first else { return }
        logger.warning(
            "peer connection refused: \(detail)",
            metadata: ["peer": "\(peer)", "cause": "\(cause.rawValue)", "repeats": "logged once per peer and cause"])
    }

    func refusedByPeer(peer: String, reason: String) {
        let key = "\(peer)|by-peer|\(reason)"
        let first = state.withLock { $0.logged.count < 4096 && $0.logged.insert(key).inserted }
        guard first else { return }
        logger.error(
            "a peer refused this node's connection: fix the configuration named by the cause",
            metadata: ["peer": "\(peer)", "cause": "\(reason)"])
    }

    // MARK: dialling

    /// Keeps one authenticated connection of `kind` to `peer`, dialling again with
    /// jittered exponential back-off whenever it is down.
    private func dial(_ peer: NodeID, _ kind: ConnectionKind) async {
        var attempt = 0
        var reportedDown = false
        let maximum = configuration.maximumMessageBytes
        while !Task.isCancelled && !state.withLock({ $0.stopped }) {
            guard let address = state.withLock({ $0.addresses[peer] }) else { return }
            let promise = HandshakeSignal(group.next().makePromise(of: Void.self))
            let bootstrap = ClientBootstrap(group: group)
                .connectTimeout(.seconds(2))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(PeerMessageDecoder(maximumBytes: maximum)),
                            PeerChannelHandler(
                                transport: self, role: .dialer(peer: peer, kind: kind), handshake: promise))
                    }
                }
            do {
                let channel = try await bootstrap.connect(host: address.host, port: address.port).get()
                let id = ObjectIdentifier(channel)
                let stopped = state.withLock { state in
                    if !state.stopped { state.dialed[id] = channel }
                    return state.stopped
                }
                if stopped {
                    try? await channel.close()
                    promise.complete(HandshakeFailure.connectionClosed("stopping"))
                    break
                }
                do {
                    try await promise.future.get()
                    attempt = 0
                    reportedDown = false
                } catch {
                    attempt += 1
                }
                try? await channel.closeFuture.get()
                _ = state.withLock { $0.dialed.removeValue(forKey: id) }
            } catch {
                promise.complete(HandshakeFailure.connectionClosed("node \(peer)"))
                attempt += 1
                if !reportedDown {
                    reportedDown = true
                    logger.info(
                        "peer not reachable yet: dialling again with back-off",
                        metadata: ["peer": "\(peer)", "address": "\(address)", "connection": "\(kind)"])
                }
            }
            let ceiling = min(
                configuration.reconnectMaximumMilliseconds,
                configuration.reconnectMinimumMilliseconds << min(attempt, 16))
            let delay = attempt == 0 ? configuration.reconnectMinimumMilliseconds : Int.random(in: 0...ceiling)
            do {
                try await Task.sleep(for: .milliseconds(delay))
            } catch {
                break
            }
        }
    }
}

/// The dialer's view of one handshake: completed once, by whichever of the channel handler
/// (success or failure) and the dialer (a connect that failed first) gets there first.
final class HandshakeSignal: Sendable {
    private let promise: EventLoopPromise<Void>
    private let done = Atomic<Bool>(false)

    init(_ promise: EventLoopPromise<Void>) { self.promise = promise }

    var future: EventLoopFuture<Void> { promise.futureResult }

    func complete(_ failure: (any Error)?) {
        guard done.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        if let failure { promise.fail(failure) } else { promise.succeed() }
    }
}

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
    private let pendingHandshakes = Atomic<Int>(0)
    /// The handshake's HMAC key (made per use: `SymmetricKey` is not `Sendable`).
    var key: SymmetricKey { SymmetricKey(data: configuration.secret) }
    private let group: MultiThreadedEventLoopGroup
    /// Whether `stop` shuts the group down (false when the caller lent it).
    private let ownsGroup: Bool

    private struct State {
        var receiver: (any FrameReceiver)?
        var frames: [NodeID: PeerConnection] = [:]
        var bulk: [NodeID: PeerConnection] = [:]
        var server: (any Channel)?
        /// Pending re-dial timers, by slot.
        var timers: [DialKey: Scheduled<Void>] = [:]
        /// Slots whose peer was logged unreachable (until a handshake succeeds).
        var reportedDown: Set<DialKey> = []
        var dialed: [ObjectIdentifier: any Channel] = [:]
        var stopped = false
        /// Where each peer listens (from the configuration; `setAddress` changes it).
        var addresses: [NodeID: PeerAddress] = [:]
        var nonces = RecentNonces(capacity: 4096)
        /// When a refusal was last logged, by source host and cause (at most one line per
        /// key per `refusalLogInterval`).
        var logged: [String: ContinuousClock.Instant] = [:]
        /// Bulk requests in service per peer (over all its connections).
        var servingByPeer: [NodeID: Int] = [:]
        /// New inbound connections each source host may still open (a token bucket).
        var acceptBudget: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]
    }
    private let state = Mutex(State())
    private let stats = Mutex(PeerTransportStatistics())

    static let refusalLogInterval = Duration.seconds(600)

    /// `group`: event loops lent by the caller (shared by several transports in one
    /// process; `stop` leaves them running); nil: the transport makes and owns its own.
    public init(
        configuration: PeerTransportConfiguration, logger: Logger = Logger(label: "raftd.transport"),
        group: MultiThreadedEventLoopGroup? = nil
    ) throws(PeerTransportError) {
        if let problem = configuration.validate() { throw .configuration(problem) }
        self.configuration = configuration
        self.logger = logger
        state.withLock { $0.addresses = configuration.peers }
        ownsGroup = group == nil
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
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
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let source = channel.remoteAddress?.ipAddress ?? "unknown"
                    guard admit(source) else {
                        refused(
                            cause: .connectionRate, peer: "unidentified peer", source: source,
                            detail:
                                "more than \(configuration.acceptsPerSecond) new connections a second from \(source) (burst \(configuration.acceptBurst))"
                        )
                        throw PeerTransportError.configuration("connection rate")
                    }
                    try addPipeline(to: channel, role: .acceptor, handshake: nil)
                }
            }
            .bind(host: configuration.listen.host, port: configuration.listen.port)
    }

    /// Takes one new-connection token of `source`: a host may open `acceptBurst`
    /// connections at once and `acceptsPerSecond` after that, before any byte of it is
    /// read. A stranger can then make this node run only so many handshakes (TLS costs a
    /// key exchange and a signature each) on the event loop the peers' frames share.
    private func admit(_ source: String) -> Bool {
        let now = ContinuousClock.now
        let rate = Double(configuration.acceptsPerSecond)
        let burst = Double(configuration.acceptBurst)
        return state.withLock { state in
            var entry = state.acceptBudget[source] ?? (burst, now)
            entry.tokens = min(burst, entry.tokens + (now - entry.at) / .seconds(1) * rate)
            entry.at = now
            guard entry.tokens >= 1 else {
                state.acceptBudget[source] = entry
                return false
            }
            entry.tokens -= 1
            if state.acceptBudget[source] == nil && state.acceptBudget.count >= 4_096 {
                // Bounded: forget the hosts whose budget has refilled (they lose nothing).
                let full = burst
                state.acceptBudget = state.acceptBudget.filter {
                    $0.value.tokens + (now - $0.value.at) / .seconds(1) * rate < full
                }
                if state.acceptBudget.count >= 4_096 { return false }
            }
            state.acceptBudget[source] = entry
            return true
        }
    }

    /// A connection's handlers, either side: the decoder (small until the handshake), the
    /// sealer of outgoing messages, and the handler running the handshake and traffic.
    private func addPipeline(
        to channel: any Channel, role: PeerChannelHandler.Role, handshake: HandshakeSignal?
    )
        throws
    {
        let limit = DecoderLimit(PeerHandshake.maximumHandshakeBytes)
        let sealer = PeerSealer()
        if let tls = configuration.tls {
            if case .dialer = role {
                try channel.pipeline.syncOperations.addHandler(try tls.handler(dialer: true))
            } else {
                try channel.pipeline.syncOperations.addHandler(try tls.handler(dialer: false))
            }
        }
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(PeerMessageDecoder(limit: limit)), sealer,
            PeerChannelHandler(transport: self, role: role, handshake: handshake, limit: limit, sealer: sealer))
    }

    private func bindError(_ error: any Error) -> PeerTransportError {
        .bind("cannot listen on \(configuration.listen) for peers: \(error). Is another process using the port?")
    }

    private func started(_ server: any Channel) {
        state.withLock { $0.server = server }
        for peer in configuration.peers.keys where configuration.nodeID < peer {
            for kind in [ConnectionKind.frames, .bulk] { dial(peer, kind, attempt: 0) }
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
        let (server, timers, channels) = beginStop()
        for timer in timers { timer.cancel() }
        try? await server?.close()
        for channel in channels { try? await channel.close() }
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    /// `stop` for callers outside Swift concurrency.
    @available(*, noasync, message: "use stop()")
    public func stopBlocking() {
        let (server, timers, channels) = beginStop()
        for timer in timers { timer.cancel() }
        try? server?.close().wait()
        for channel in channels { try? channel.close().wait() }
        // A dialer still finishing its last attempt would find an owned group shut down
        // under it; callers of this form lend the group (`TCPNetwork`), which stays up.
        if ownsGroup { try? group.syncShutdownGracefully() }
    }

    private func beginStop() -> ((any Channel)?, [Scheduled<Void>], [any Channel]) {
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
            defer { state.timers = [:] }
            return (state.server, Array(state.timers.values), channels)
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
        return send(frame, on: connection)
    }

    private func send(_ frame: PeerFrame, on connection: PeerConnection) -> Bool {
        let body = PeerWire.encode(frame)
        let size = body.count + 5 + PeerSealer.tagBytes
        guard size <= configuration.maximumMessageBytes else {
            // A turn's frame over the bound goes as several (in order, on one connection);
            // only a single message over it by itself is dropped.
            guard frame.messages.count > 1 else {
                logger.error(
                    "a message over the peer message bound was not sent (maximumMessageBytes must exceed the host's message size)",
                    metadata: [
                        "peer": "\(frame.to)", "bytes": "\(size)", "partition": "\(frame.messages[0].partition)",
                    ])
                stats.withLock { $0.framesDropped += 1 }
                return false
            }
            let half = frame.messages.count / 2
            var first = frame
            first.messages = Array(frame.messages[..<half])
            var second = frame
            second.messages = Array(frame.messages[half...])
            let a = send(first, on: connection)
            let b = send(second, on: connection)
            return a && b
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
        let deadline: Int64
        switch request {
        case .read, .transferLeadership, .routes, .storageIncarnation:
            // A leadership transfer is answered once it started, a routing lookup at once:
            // a read's deadline.
            deadline = configuration.bulkReadTimeoutMilliseconds
        default:
            deadline = configuration.bulkStoreTimeoutMilliseconds
        }
        switch await connection.request(
            PeerWire.encode(request), bound: configuration.bulkRequestsInFlight, deadlineMilliseconds: deadline)
        {
        case .success(let response): return response
        case .failure(let error): throw error
        }
    }

    // MARK: connection handlers' calls

    func freshNonce(_ nonce: [UInt8]) -> Bool { state.withLock { $0.nonces.insert(nonce) } }

    /// Counts an inbound connection into its handshake; false over the bound.
    func beginHandshake() -> Bool {
        guard pendingHandshakes.add(1, ordering: .relaxed).newValue <= configuration.maximumPendingHandshakes else {
            pendingHandshakes.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func endHandshake() { pendingHandshakes.subtract(1, ordering: .relaxed) }

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
        let peer = connection.peer
        // Per peer over all its connections, held until the answer left the process: a
        // peer that reconnects or stops reading cannot get more than the bound in service.
        let admitted = state.withLock { state in
            guard state.servingByPeer[peer, default: 0] < bound else { return false }
            state.servingByPeer[peer, default: 0] += 1
            return true
        }
        guard admitted else {
            stats.withLock { $0.bulkRequestsRefused += 1 }
            connection.write(
                .bulkResponse, PeerConnection.u64(id),
                PeerWire.encode(BulkResponse.refused("busy: \(bound) bulk requests in service for this node")))
            return
        }
        stats.withLock { $0.bulkRequestsServed += 1 }
        let task = Task { [self] in
            let response = await receiver.serve(request, from: peer)
            connection.write(.bulkResponse, PeerConnection.u64(id), PeerWire.encode(response)) { [self] _ in
                state.withLock { $0.servingByPeer[peer, default: 1] -= 1 }
            }
            connection.served(id)
        }
        connection.serving(id, task)
    }

    func countBulkBytes(_ count: Int) { stats.withLock { $0.bulkBytesReceived += UInt64(count) } }

    /// Counts a refusal and logs it at most once per source host and cause every ten
    /// minutes (a peer retrying with the wrong secret every second would flood the log;
    /// what a stranger claims before its proof never keys the log).
    func refused(cause: RefusalCause, peer: String, source: String, detail: String) {
        stats.withLock { $0.refusals[cause.rawValue, default: 0] += 1 }
        guard shouldLog("\(source)|\(cause.rawValue)") else { return }
        logger.warning(
            "peer connection refused: \(detail)",
            metadata: [
                "peer": "\(peer)", "cause": "\(cause.rawValue)",
                "repeats": "logged at most once per source and cause every 10 minutes",
            ])
    }

    func refusedByPeer(peer: String, reason: String) {
        guard shouldLog("\(peer)|by-peer|\(reason)") else { return }
        logger.error(
            "a peer refused this node's connection: fix the configuration named by the cause",
            metadata: ["peer": "\(peer)", "cause": "\(reason)"])
    }

    private func shouldLog(_ key: String) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            if let last = state.logged[key], now - last < Self.refusalLogInterval { return false }
            if state.logged.count >= 1024 {
                state.logged = state.logged.filter { now - $0.value < Self.refusalLogInterval }
                if state.logged.count >= 1024 { return false }
            }
            state.logged[key] = now
            return true
        }
    }

    // MARK: dialling

    /// Keeps one authenticated connection of `kind` to `peer`, dialling again with
    /// jittered exponential back-off whenever it is down. Driven by the event loops alone
    /// (connect, handshake, close, timer): never by Swift's cooperative pool, which a busy
    /// process (or a test blocking its threads) may not run for a while.
    private func dial(_ peer: NodeID, _ kind: ConnectionKind, attempt: Int) {
        guard let address = state.withLock({ $0.stopped ? nil : $0.addresses[peer] }) else { return }
        let loop = group.next()
        let signal = HandshakeSignal(loop.makePromise(of: Void.self))
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(2))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try addPipeline(to: channel, role: .dialer(peer: peer, kind: kind), handshake: signal)
                }
            }
        bootstrap.connect(host: address.host, port: address.port).whenComplete { [self] result in
            switch result {
            case .success(let channel):
                let id = ObjectIdentifier(channel)
                let stopped = state.withLock { state in
                    if !state.stopped { state.dialed[id] = channel }
                    return state.stopped
                }
                if stopped {
                    channel.close(promise: nil)
                    signal.complete(HandshakeFailure.connectionClosed("stopping"))
                    return
                }
                signal.future.whenComplete { handshake in
                    let next: Int
                    if case .success = handshake {
                        next = 0
                        _ = self.state.withLock { $0.reportedDown.remove(DialKey(peer: peer, kind: kind)) }
                    } else {
                        next = attempt + 1
                    }
                    channel.closeFuture.whenComplete { _ in
                        _ = self.state.withLock { $0.dialed.removeValue(forKey: id) }
                        self.scheduleDial(peer, kind, attempt: next)
                    }
                }
            case .failure:
                signal.complete(HandshakeFailure.connectionClosed("node \(peer)"))
                let first = state.withLock { $0.reportedDown.insert(DialKey(peer: peer, kind: kind)).inserted }
                if first {
                    logger.info(
                        "peer not reachable yet: dialling again with back-off",
                        metadata: ["peer": "\(peer)", "address": "\(address)", "connection": "\(kind)"])
                }
                scheduleDial(peer, kind, attempt: attempt + 1)
            }
        }
    }

    /// The next dial of `peer` after the back-off for `attempt` (0: after a connection that
    /// was up, a short jittered pause).
    private func scheduleDial(_ peer: NodeID, _ kind: ConnectionKind, attempt: Int) {
        let minimum = configuration.reconnectMinimumMilliseconds
        let ceiling = min(configuration.reconnectMaximumMilliseconds, minimum << min(attempt, 16))
        let delay = attempt == 0 ? Int.random(in: minimum...(2 * minimum)) : Int.random(in: 0...ceiling)
        let key = DialKey(peer: peer, kind: kind)
        state.withLock { state in
            guard !state.stopped else { return }
            state.timers[key] = group.next().scheduleTask(in: .milliseconds(Int64(delay))) { [self] in
                dial(peer, kind, attempt: attempt)
            }
        }
    }
}

/// One dialled connection slot: a peer and a kind.
struct DialKey: Hashable {
    let peer: NodeID
    let kind: ConnectionKind
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

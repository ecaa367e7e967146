import Crypto
import NIOCore
import NIOSSL
import RaftEngine

/// Runs one peer connection on its event loop: the handshake, then the traffic of its
/// kind. Anything unexpected (a malformed, truncated, oversized or out-of-place message, a
/// failed proof) closes this connection only, with one log line per peer and cause.
final class PeerChannelHandler: ChannelInboundHandler {
    typealias InboundIn = PeerWireMessage

    enum Role {
        case dialer(peer: NodeID, kind: ConnectionKind)
        case acceptor
    }

    private enum State {
        case awaitingHello
        case awaitingChallenge(PeerHandshake.Hello)
        case awaitingProof(PeerHandshake.Hello, acceptorNonce: [UInt8])
        case awaitingAccepted(PeerHandshake.Hello, acceptorNonce: [UInt8])
        case established(PeerConnection)
        case finished
    }

    private let transport: PeerTransport
    private let role: Role
    private var state: State
    private let limit: DecoderLimit
    private let sealer: PeerSealer
    /// Checks the peer's integrity tags once established.
    private var openingKey: SymmetricKey?
    private var openingDirection: UInt8 = 0
    private var openingSequence: UInt64 = 0
    /// Counted among the transport's pending handshakes (acceptors only).
    private var countedPending = false
    /// Completed once the handshake succeeds or fails (the dialer waits on it).
    private let handshake: HandshakeSignal?
    private var handshakeDone = false
    private var timeout: Scheduled<Void>?
    /// Who the peer is (claimed, before the proof), for log lines.
    private var claimedPeer: String = "unidentified peer"

    init(
        transport: PeerTransport, role: Role, handshake: HandshakeSignal?, limit: DecoderLimit, sealer: PeerSealer
    ) {
        self.transport = transport
        self.role = role
        self.handshake = handshake
        self.limit = limit
        self.sealer = sealer
        switch role {
        case .acceptor: state = .awaitingHello
        case .dialer(let peer, _):
            state = .finished
            claimedPeer = "node \(peer)"
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        sourceHost = context.remoteAddress?.ipAddress ?? "unknown"
        let milliseconds = transport.configuration.handshakeTimeoutMilliseconds
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: .milliseconds(milliseconds)) {
            let (handler, context) = loopBound.value
            handler.fail(context, .handshakeTimeout, "no completed handshake within \(milliseconds) ms")
        }
        if case .acceptor = role {
            claimedPeer = context.remoteAddress.map { "\($0)" } ?? "unidentified peer"
            guard transport.beginHandshake() else {
                return fail(
                    context, .tooManyHandshakes,
                    "more than \(transport.configuration.maximumPendingHandshakes) connections are in their handshake")
            }
            countedPending = true
        }
        if case .dialer(let peer, let kind) = role {
            let configuration = transport.configuration
            let hello = PeerHandshake.Hello(
                cluster: configuration.clusterID, from: configuration.nodeID, to: peer, kind: kind,
                nonce: PeerHandshake.nonce())
            state = .awaitingChallenge(hello)
            write(context, .hello, hello.encoded)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        guard let type = PeerMessageType(rawValue: message.type) else {
            return fail(context, .malformedMessage, "unknown message type \(message.type)")
        }
        let body = Array(buffer: message.body)
        switch state {
        case .awaitingHello:
            guard type == .hello, let hello = PeerHandshake.Hello(decoding: body) else {
                return fail(context, .badHandshake, "expected a hello of this protocol, got type \(message.type)")
            }
            acceptHello(context, hello)
        case .awaitingChallenge(let hello):
            if type == .refused { return peerRefused(context, body) }
            guard type == .challenge, body.count == PeerHandshake.nonceBytes else {
                return fail(context, .badHandshake, "expected a challenge, got type \(message.type)")
            }
            state = .awaitingAccepted(hello, acceptorNonce: body)
            write(
                context, .proof,
                PeerHandshake.dialerMAC(
                    secret: transport.key, hello: hello, acceptorNonce: body, binding: binding(context)))
        case .awaitingProof(let hello, let acceptorNonce):
            guard type == .proof else {
                return fail(context, .badHandshake, "expected a proof, got type \(message.type)")
            }
            guard
                PeerHandshake.verify(
                    body, label: "raftd-dialer", secret: transport.key, hello: hello, acceptorNonce: acceptorNonce,
                    binding: binding(context))
            else {
                return refuse(
                    context, .wrongSecret,
                    "it could not prove the cluster's shared secret: the secret files differ, or it is not a node of this cluster"
                )
            }
            write(
                context, .accepted,
                PeerHandshake.acceptorMAC(
                    secret: transport.key, hello: hello, acceptorNonce: acceptorNonce, binding: binding(context)))
            establish(context, hello: hello, acceptorNonce: acceptorNonce, dialer: false)
        case .awaitingAccepted(let hello, let acceptorNonce):
            if type == .refused { return peerRefused(context, body) }
            guard type == .accepted else {
                return fail(context, .badHandshake, "expected acceptance, got type \(message.type)")
            }
            guard
                PeerHandshake.verify(
                    body, label: "raftd-acceptor", secret: transport.key, hello: hello, acceptorNonce: acceptorNonce,
                    binding: binding(context))
            else {
                return fail(
                    context, .wrongSecret,
                    "it accepted this node without proving the cluster's shared secret: the secret files differ, or it is not a node of this cluster"
                )
            }
            establish(context, hello: hello, acceptorNonce: acceptorNonce, dialer: true)
        case .established(let connection):
            guard let key = openingKey, body.count >= PeerSealer.tagBytes else {
                return fail(context, .badIntegrityTag, "a message without its integrity tag")
            }
            let content = body.prefix(body.count - PeerSealer.tagBytes)
            let expected = PeerSealer.tag(
                key: key, direction: openingDirection, sequence: openingSequence, message: [message.type] + content)
            guard constantTimeEqual(expected, body.suffix(PeerSealer.tagBytes)) else {
                return fail(
                    context, .badIntegrityTag,
                    "a message failed its integrity check: altered on the way, or not from the authenticated peer")
            }
            openingSequence += 1
            traffic(context, connection, type, Array(content))
        case .finished:
            break
        }
    }

    /// The acceptor's checks on a hello, then its challenge.
    private func acceptHello(_ context: ChannelHandlerContext, _ hello: PeerHandshake.Hello) {
        let configuration = transport.configuration
        claimedPeer = "node \(hello.from) at \(context.remoteAddress.map { "\($0)" } ?? "?")"
        guard hello.cluster == configuration.clusterID else {
            return refuse(
                context, .wrongCluster,
                "it belongs to cluster \(hello.cluster), this node to \(configuration.clusterID): check its configuration"
            )
        }
        guard hello.to == configuration.nodeID else {
            return refuse(
                context, .wrongNode,
                "it dialled node \(hello.to), but this is node \(configuration.nodeID): check the peer addresses")
        }
        guard hello.from != configuration.nodeID, configuration.peers[hello.from] != nil else {
            return refuse(context, .unknownNode, "it is not among this node's peers")
        }
        guard transport.freshNonce(hello.nonce) else {
            return refuse(context, .replayedChallenge, "it repeated a recent handshake nonce (a replay)")
        }
        let acceptorNonce = PeerHandshake.nonce()
        state = .awaitingProof(hello, acceptorNonce: acceptorNonce)
        write(context, .challenge, acceptorNonce)
    }

    private func establish(
        _ context: ChannelHandlerContext, hello: PeerHandshake.Hello, acceptorNonce: [UInt8], dialer: Bool
    ) {
        timeout?.cancel()
        endPending()
        let key = PeerHandshake.sessionKey(
            secret: transport.key, hello: hello, acceptorNonce: acceptorNonce, binding: binding(context))
        sealer.seal(key: key, direction: dialer ? PeerHandshake.dialerToAcceptor : PeerHandshake.acceptorToDialer)
        openingKey = key
        openingDirection = dialer ? PeerHandshake.acceptorToDialer : PeerHandshake.dialerToAcceptor
        limit.bytes = transport.configuration.maximumMessageBytes + PeerSealer.tagBytes
        let connection = PeerConnection(
            channel: context.channel, peer: dialer ? hello.to : hello.from, kind: hello.kind)
        state = .established(connection)
        // Both ends ping when they have written nothing for a third of the idle time, so a
        // connection that reads nothing for the whole of it has a dead or stuck peer.
        let idle = transport.configuration.idleTimeoutMilliseconds
        try? context.pipeline.syncOperations.addHandler(
            IdleStateHandler(readTimeout: .milliseconds(idle), writeTimeout: .milliseconds(max(1, idle / 3))),
            position: .first)
        transport.register(connection)
        completeHandshake(nil)
    }

    private func endPending() {
        if countedPending {
            countedPending = false
            transport.endHandshake()
        }
    }

    private func traffic(
        _ context: ChannelHandlerContext, _ connection: PeerConnection, _ type: PeerMessageType, _ body: [UInt8]
    ) {
        switch (type, connection.kind) {
        case (.frame, .frames):
            let frame: PeerFrame
            do {
                frame = try PeerWire.decodeFrame(body)
            } catch {
                return fail(context, .malformedMessage, "\(error)")
            }
            guard frame.from == connection.peer, frame.to == transport.configuration.nodeID else {
                return fail(
                    context, .impersonation,
                    "a frame from \(frame.from) to \(frame.to) on the connection of node \(connection.peer)")
            }
            transport.deliver(frame, bytes: body.count + 5)
        case (.ping, _):
            break
        case (.bulkRequest, .bulk):
            guard body.count >= 8 else { return fail(context, .malformedMessage, "a bulk request without its ID") }
            let id = Self.u64(body)
            let request: BulkRequest
            do {
                request = try PeerWire.decodeBulkRequest(Array(body[8...]))
            } catch {
                return fail(context, .malformedMessage, "\(error)")
            }
            transport.serve(request, id: id, on: connection)
        case (.bulkResponse, .bulk):
            guard body.count >= 8 else { return fail(context, .malformedMessage, "a bulk answer without its ID") }
            let id = Self.u64(body)
            let response: BulkResponse
            do {
                response = try PeerWire.decodeBulkResponse(Array(body[8...]))
            } catch {
                return fail(context, .malformedMessage, "\(error)")
            }
            if case .data(let bytes) = response { transport.countBulkBytes(bytes.count) }
            guard connection.answer(id, response) else {
                return fail(context, .malformedMessage, "an answer to bulk request \(id), which was never asked")
            }
        default:
            fail(context, .malformedMessage, "a message of type \(type) on a \(connection.kind) connection")
        }
    }

    private static func u64(_ bytes: [UInt8]) -> UInt64 {
        bytes[..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent {
            switch idle {
            case .write:
                write(context, .ping, [])
            case .read:
                transport.logger.warning(
                    "peer connection silent for the idle time: closing it (it is dialled again)",
                    metadata: ["peer": "\(claimedPeer)"])
                context.close(promise: nil)
            default:
                break
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let framing = error as? PeerFramingError {
            fail(context, framing.cause, framing.detail)
        } else if Self.isTLSFailure(error) && !"\(error)".contains("EOF during handshake") {
            // Closed during the TLS handshake (a port probe, a peer killed or refusing for
            // load) is a closed connection, below; anything else is TLS refusing the peer:
            // before establishment a certificate or protocol problem, after it a damaged
            // or injected record (the tags' job without TLS).
            if isEstablished {
                fail(context, .tlsRecord, "TLS failed on an established connection: \(error)")
            } else {
                fail(context, .tlsHandshake, "TLS handshake failed: \(error)")
            }
        } else {
            transport.logger.debug(
                "peer connection error", metadata: ["peer": "\(claimedPeer)", "error": "\(error)"])
            completeHandshake(.connectionClosed(claimedPeer))
            context.close(promise: nil)
        }
    }

    /// A TLS error other than the peer's process or connection going away.
    private static func isTLSFailure(_ error: any Error) -> Bool {
        if error is BoringSSLError { return true }
        guard let tls = error as? NIOSSLError else { return false }
        if case .uncleanShutdown = tls { return false }
        return true
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        completeHandshake(.connectionClosed(claimedPeer))
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        endPending()
        if case .established(let connection) = state {
            transport.unregister(connection)
            connection.closed()
        }
        state = .finished
        completeHandshake(.connectionClosed(claimedPeer))
        context.fireChannelInactive()
    }

    /// Refuses the peer: tells it why (so its operator sees the cause), then closes.
    private func refuse(_ context: ChannelHandlerContext, _ cause: RefusalCause, _ detail: String) {
        transport.refused(cause: cause, peer: claimedPeer, source: sourceHost, detail: detail)
        write(context, .refused, Array(cause.rawValue.utf8))
        finish(context, cause)
    }

    /// Closes the connection over a broken stream or a failed proof, without a word.
    private func fail(_ context: ChannelHandlerContext, _ cause: RefusalCause, _ detail: String) {
        guard !isFinished else { return }
        transport.refused(cause: cause, peer: claimedPeer, source: sourceHost, detail: detail)
        finish(context, cause)
    }

    private func peerRefused(_ context: ChannelHandlerContext, _ body: [UInt8]) {
        let reason = String(decoding: body.prefix(64), as: UTF8.self)
        transport.refusedByPeer(peer: claimedPeer, reason: reason)
        finish(context, nil)
    }

    /// The remote host (no port): what keys refusal log lines.
    private var sourceHost = "unknown"

    /// The TLS channel binding of this connection (see `PeerHandshake.transcript`): the
    /// digests of the dialer's and the acceptor's leaf certificates. Empty without TLS;
    /// with TLS and no peer certificate (it cannot happen: peers must present one), a
    /// binding no honest end computes.
    private var tlsBinding: [UInt8]?

    private func binding(_ context: ChannelHandlerContext) -> [UInt8] {
        if let tlsBinding { return tlsBinding }
        var computed: [UInt8] = []
        if let tls = transport.configuration.tls {
            let peer =
                (try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self))?.peerCertificate.flatMap {
                    try? $0.toDERBytes()
                } ?? []
            let own = Array(SHA256.hash(data: tls.leafDER))
            let theirs = peer.isEmpty ? [UInt8](repeating: 0xFF, count: 32) : Array(SHA256.hash(data: peer))
            if case .dialer = role { computed = own + theirs } else { computed = theirs + own }
        }
        tlsBinding = computed
        return computed
    }

    private var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    private var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    private func finish(_ context: ChannelHandlerContext, _ cause: RefusalCause?) {
        timeout?.cancel()
        endPending()
        if case .established(let connection) = state {
            transport.unregister(connection)
            connection.closed()
        }
        state = .finished
        completeHandshake(.refused(claimedPeer, cause?.rawValue ?? "refused by the peer"))
        context.close(promise: nil)
    }

    private func completeHandshake(_ failure: HandshakeFailure?) {
        guard !handshakeDone else { return }
        handshakeDone = true
        handshake?.complete(failure)
    }

    private func write(_ context: ChannelHandlerContext, _ type: PeerMessageType, _ body: [UInt8]) {
        var buffer = context.channel.allocator.buffer(capacity: 5 + body.count + PeerSealer.tagBytes)
        buffer.writeInteger(UInt32(1 + body.count))
        buffer.writeInteger(type.rawValue)
        buffer.writeBytes(body)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    typealias OutboundOut = ByteBuffer
}

enum HandshakeFailure: Error {
    case connectionClosed(String)
    case refused(String, String)
}

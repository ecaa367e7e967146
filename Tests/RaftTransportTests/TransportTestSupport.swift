import Crypto
import Foundation
import RaftConsensus
import RaftEngine
import RaftTesting
import Synchronization

@testable import RaftTransport

#if canImport(Glibc)
    import Glibc
#endif

/// Records frames and answers bulk requests: a stand-in node host for transport tests.
final class RecordingReceiver: FrameReceiver, Sendable {
    private let frames = Mutex<[PeerFrame]>([])
    /// While set, `serve` waits (tests of the in-flight bounds).
    let holdServing = Atomic<Bool>(false)

    var received: [PeerFrame] { frames.withLock { $0 } }

    func receive(_ frame: PeerFrame) { frames.withLock { $0.append(frame) } }

    func serve(_ request: BulkRequest, from: NodeID) async -> BulkResponse {
        while holdServing.load(ordering: .relaxed) { try? await Task.sleep(for: .milliseconds(5)) }
        switch request {
        case .read(_, _, let offset, let length):
            return .data((0..<length).map { UInt8(truncatingIfNeeded: Int(offset) + $0) })
        case .store, .createReplica, .transferLeadership, .snapshotChunk, .routes, .storageIncarnation:
            return .stored
        }
    }
}

/// A mesh of transports on 127.0.0.1 with recording receivers.
struct Mesh {
    let network: TCPNetwork
    let nodes: [NodeID]
    let receivers: [RecordingReceiver]

    init(_ count: Int, adjust: @escaping @Sendable (inout PeerTransportConfiguration) -> Void = { _ in }) throws {
        nodes = (0..<count).map { _ in NodeID.random() }.sorted()
        // No host sends liveness frames here: idle connections must not be closed.
        network = TCPNetwork(clusterID: ClusterID.random(), nodes: nodes) { configuration in
            configuration.idleTimeoutMilliseconds = 600_000
            adjust(&configuration)
        }
        receivers = nodes.map { _ in RecordingReceiver() }
        for (node, receiver) in zip(nodes, receivers) { _ = try network.attach(node, receiver: receiver) }
    }

    func transport(_ i: Int) -> PeerTransport { network.transport(nodes[i])! }

    /// Opens `strangers` raw connections to node `i` and waits until it counts `atLeast`
    /// refusals for `cause`; then checks the established peers still exchange frames.
    /// Returns the sockets (open until the caller drops them).
    func flood(
        _ i: Int, strangers: Int, refusedFor cause: RefusalCause, atLeast count: UInt64, within seconds: Double
    ) async throws -> [RawSocket] {
        let target = transport(i)
        let sockets = try (0..<strangers).map { _ in try RawSocket(port: target.listeningPort) }
        try await until("\(count) connections refused for \(cause.rawValue)", within: seconds) {
            target.statistics.refusals[cause.rawValue, default: 0] >= count
        }
        try await exchange(0, 1)
        try await exchange(1, 0)
        return sockets
    }

    func stop() { for node in nodes { network.detach(node) } }

    func waitConnected(within seconds: Double = 10) async throws {
        try await until("every node connected to every other", within: seconds) {
            nodes.indices.allSatisfy {
                network.transport(nodes[$0])?.connectedPeers.count == nodes.count - 1
                    && network.transport(nodes[$0])?.bulkConnectedPeers.count == nodes.count - 1
            }
        }
    }

    /// Sends a frame from `a` to `b` and waits until `b` received it (retrying while the
    /// connection comes up).
    func exchange(_ a: Int, _ b: Int, within seconds: Double = 10) async throws {
        let marker = UInt64.random(in: 1...UInt64.max)
        let key = PartitionKey(authority: try StorageName("s\(a)"), partitionID: try PartitionID(1))
        let frame = PeerFrame(
            from: nodes[a], to: nodes[b], senderBoot: marker,
            messages: [
                PeerMessage(partition: key, message: Message(kind: .heartbeat, from: MemberID(1), to: MemberID(2)))
            ])
        try await until("a frame from node \(a) reaches node \(b)", within: seconds) {
            if receivers[b].received.contains(where: { $0.senderBoot == marker }) { return true }
            _ = transport(a).send(frame)
            return false
        }
    }
}

struct Timeout: Error, CustomStringConvertible {
    let description: String
}

func until(_ what: String, within seconds: Double, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    if try await condition() { return }
    throw Timeout(description: "timed out after \(seconds) s waiting until \(what)")
}

/// A plain blocking TCP socket to 127.0.0.1: what a hostile or broken client sends.
final class RawSocket {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            throw Timeout(description: "connect to port \(port) failed: errno \(errno)")
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Ends the writing half: the peer sees the end of the stream.
    func finishWriting() { shutdown(fd, Int32(SHUT_WR)) }

    func sendMessage(_ type: UInt8, _ body: [UInt8]) {
        send(withUnsafeBytes(of: UInt32(1 + body.count).bigEndian) { Array($0) } + [type] + body)
    }

    private func read(_ count: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while out.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
            guard n > 0 else { return nil }
            out += buffer[..<n]
        }
        return out
    }

    /// The next message, or nil when the connection closed (or nothing came for 5 s).
    func receiveMessage() -> (type: UInt8, body: [UInt8])? {
        guard let header = read(4) else { return nil }
        let length = Int(header.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        guard length >= 1, let rest = read(length) else { return nil }
        return (rest[0], Array(rest[1...]))
    }

    /// Whether the peer closed the connection (reads until end of stream or time-out).
    func closedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

/// Runs the dialer's half of the handshake by hand, as a peer would, then seals messages
/// with the session key as a real node does.
final class ManualDialer {
    let hello: PeerHandshake.Hello
    let secret: [UInt8]
    private var sessionKey: SymmetricKey?
    private var sequence: UInt64 = 0

    init(cluster: ClusterID, from: NodeID, to: NodeID, kind: ConnectionKind = .frames, secret: [UInt8]) {
        hello = PeerHandshake.Hello(cluster: cluster, from: from, to: to, kind: kind, nonce: PeerHandshake.nonce())
        self.secret = secret
    }

    /// Sends the hello and, given a challenge, the proof. Returns what the acceptor finally
    /// answered (accepted or refused), or nil when it closed.
    func run(_ socket: RawSocket) -> (type: UInt8, body: [UInt8])? {
        socket.sendMessage(PeerMessageType.hello.rawValue, hello.encoded)
        guard let challenge = socket.receiveMessage() else { return nil }
        guard challenge.type == PeerMessageType.challenge.rawValue else { return challenge }
        let key = SymmetricKey(data: secret)
        let proof = PeerHandshake.dialerMAC(secret: key, hello: hello, acceptorNonce: challenge.body, binding: [])
        socket.sendMessage(PeerMessageType.proof.rawValue, proof)
        let answer = socket.receiveMessage()
        if answer?.type == PeerMessageType.accepted.rawValue {
            sessionKey = PeerHandshake.sessionKey(secret: key, hello: hello, acceptorNonce: challenge.body, binding: [])
        }
        return answer
    }

    /// Sends a message after the handshake with its integrity tag (`tamper`: a wrong one).
    func sendSealed(_ socket: RawSocket, _ type: PeerMessageType, _ body: [UInt8], tamper: Bool = false) {
        var tag = PeerSealer.tag(
            key: sessionKey!, direction: PeerHandshake.dialerToAcceptor, sequence: sequence,
            message: [type.rawValue] + body)
        sequence += 1
        if tamper { tag[0] ^= 1 }
        socket.sendMessage(type.rawValue, body + tag)
    }
}

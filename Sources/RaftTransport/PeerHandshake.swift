import Crypto
import RaftEngine

/// The message types on a peer connection. Every message is `u32 length` (of what
/// follows), `u8 type`, then the body.
enum PeerMessageType: UInt8 {
    case hello = 1
    case challenge = 2
    case proof = 3
    case accepted = 4
    case refused = 5
    case frame = 16
    case bulkRequest = 17
    case bulkResponse = 18
    /// Keeps an idle connection's liveness visible both ways; carries nothing.
    case ping = 19
}

/// Which traffic a connection carries: consensus frames, or bulk data (so that a large
/// transfer never delays a heartbeat).
enum ConnectionKind: UInt8, Sendable, CustomStringConvertible {
    case frames = 0
    case bulk = 1

    var description: String { self == .frames ? "frames" : "bulk" }
}

/// Why a peer connection was refused or closed: the label of the refusal counters and the
/// key (with the peer) of the once-per-cause log line.
enum RefusalCause: String, Sendable, CaseIterable {
    case wrongCluster = "wrong_cluster"
    case wrongSecret = "wrong_secret"
    case unknownNode = "unknown_node"
    case wrongNode = "wrong_node"
    case replayedChallenge = "replayed_challenge"
    case badHandshake = "bad_handshake"
    case handshakeTimeout = "handshake_timeout"
    case oversizedMessage = "oversized_message"
    case malformedMessage = "malformed_message"
    case truncatedMessage = "truncated_message"
    case impersonation = "impersonation"
    case badIntegrityTag = "bad_integrity_tag"
    case tooManyHandshakes = "too_many_handshakes"
    /// The TLS handshake failed: no certificate, one the cluster's CA did not sign, or
    /// no TLS at all (plain bytes on a TLS port).
    case tlsHandshake = "tls_handshake"
    /// TLS failed on an established connection (a damaged or injected record).
    case tlsRecord = "tls_record"
    /// A source host opened connections faster than `acceptsPerSecond`.
    case connectionRate = "connection_rate"
}

/// The handshake: mutual proof of the shared secret over fresh nonces, with no secret on
/// the wire.
///
///     dialer → acceptor   hello      magic, version, cluster ID, from, to, kind, nonce_d
///     acceptor → dialer   challenge  nonce_a                    (or refused, then close)
///     dialer → acceptor   proof      HMAC(secret, "raftd-dialer" ‖ transcript)
///     acceptor → dialer   accepted   HMAC(secret, "raftd-acceptor" ‖ transcript)
///
/// The transcript is cluster ID, dialer, acceptor, kind, nonce_d, nonce_a. Each side's MAC
/// covers the other's fresh nonce, so a recorded proof is worthless on a new connection;
/// the dialer proves first, so an acceptor never computes a MAC for a stranger; the two
/// labels keep one side's MAC from serving as the other's. The acceptor also refuses a
/// dialer nonce it has seen recently (a replayed hello).
enum PeerHandshake {
    static let magic: [UInt8] = Array("RAFTPEER".utf8)
    static let protocolVersion: UInt8 = 1
    static let nonceBytes = 32
    static let helloBytes = 8 + 1 + 16 + 16 + 16 + 1 + nonceBytes
    static let macBytes = 32
    /// The largest message a connection takes before its handshake completes.
    static let maximumHandshakeBytes = 256
    /// Direction labels of the session's integrity tags.
    static let dialerToAcceptor: UInt8 = 1
    static let acceptorToDialer: UInt8 = 2

    struct Hello: Equatable {
        var cluster: ClusterID
        var from: NodeID
        var to: NodeID
        var kind: ConnectionKind
        var nonce: [UInt8]

        var encoded: [UInt8] {
            var out = magic
            out.append(protocolVersion)
            out += cluster.bytes
            out += from.bytes
            out += to.bytes
            out.append(kind.rawValue)
            out += nonce
            return out
        }

        init(cluster: ClusterID, from: NodeID, to: NodeID, kind: ConnectionKind, nonce: [UInt8]) {
            self.cluster = cluster
            self.from = from
            self.to = to
            self.kind = kind
            self.nonce = nonce
        }

        /// Nil for anything but a well-formed hello of this protocol version.
        init?(decoding bytes: [UInt8]) {
            guard bytes.count == helloBytes, Array(bytes[0..<8]) == magic, bytes[8] == protocolVersion,
                let cluster = try? ClusterID(bytes: bytes[9..<25]),
                let from = try? NodeID(bytes: bytes[25..<41]),
                let to = try? NodeID(bytes: bytes[41..<57]),
                let kind = ConnectionKind(rawValue: bytes[57])
            else { return nil }
            self.init(cluster: cluster, from: from, to: to, kind: kind, nonce: Array(bytes[58...]))
        }
    }

    static func nonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// `binding`: with TLS, SHA-256 of the dialer's and the acceptor's leaf certificates,
    /// as each end saw them (empty without TLS). A relay between two nodes that holds a
    /// certificate of the cluster's CA presents its own certificate to both, so the ends'
    /// transcripts differ and neither proof verifies: it cannot read what it relays.
    private static func transcript(_ hello: Hello, acceptorNonce: [UInt8], binding: [UInt8]) -> [UInt8] {
        hello.cluster.bytes + hello.from.bytes + hello.to.bytes + [hello.kind.rawValue] + hello.nonce + acceptorNonce
            + binding
    }

    static func acceptorMAC(secret: SymmetricKey, hello: Hello, acceptorNonce: [UInt8], binding: [UInt8]) -> [UInt8] {
        Array(
            HMAC<Crypto.SHA256>.authenticationCode(
                for: Array("raftd-acceptor".utf8) + transcript(hello, acceptorNonce: acceptorNonce, binding: binding),
                using: secret))
    }

    static func dialerMAC(secret: SymmetricKey, hello: Hello, acceptorNonce: [UInt8], binding: [UInt8]) -> [UInt8] {
        Array(
            HMAC<Crypto.SHA256>.authenticationCode(
                for: Array("raftd-dialer".utf8) + transcript(hello, acceptorNonce: acceptorNonce, binding: binding),
                using: secret))
    }

    /// The key of the connection's integrity tags, known only to the two ends.
    static func sessionKey(secret: SymmetricKey, hello: Hello, acceptorNonce: [UInt8], binding: [UInt8]) -> SymmetricKey
    {
        SymmetricKey(
            data: Array(
                HMAC<Crypto.SHA256>.authenticationCode(
                    for: Array("raftd-session".utf8)
                        + transcript(hello, acceptorNonce: acceptorNonce, binding: binding), using: secret)))
    }

    /// Constant-time check of a MAC the peer sent.
    static func verify(
        _ mac: [UInt8], label: String, secret: SymmetricKey, hello: Hello, acceptorNonce: [UInt8], binding: [UInt8]
    )
        -> Bool
    {
        guard mac.count == macBytes else { return false }
        return HMAC<Crypto.SHA256>.isValidAuthenticationCode(
            mac, authenticating: Array(label.utf8) + transcript(hello, acceptorNonce: acceptorNonce, binding: binding),
            using: secret)
    }
}

/// A bounded memory of recent dialer nonces, to refuse a replayed hello.
struct RecentNonces {
    private var order: [[UInt8]] = []
    private var seen: Set<[UInt8]> = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// False when `nonce` was seen recently; records it otherwise.
    mutating func insert(_ nonce: [UInt8]) -> Bool {
        guard !seen.contains(nonce) else { return false }
        if order.count < capacity {
            order.append(nonce)
        } else {
            seen.remove(order[next])
            order[next] = nonce
            next = (next + 1) % capacity
        }
        seen.insert(nonce)
        return true
    }
}

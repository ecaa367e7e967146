import RaftEngine

/// A host and port to listen on or dial.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` (IPv6 hosts in brackets: `[::1]:7000`).
    public init(parsing text: String) throws(PeerTransportError) {
        guard let colon = text.lastIndex(of: ":") else {
            throw .configuration("address '\(text)' has no port: write host:port, e.g. 127.0.0.1:7001")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw .configuration("address '\(text)' has no host: write host:port") }
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw .configuration("address '\(text)' has no valid port (0 to 65535)")
        }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Everything the peer transport needs: who this node is, whom it talks to, the shared
/// secret that proves membership, and the bounds on every queue.
public struct PeerTransportConfiguration: Sendable {
    public var nodeID: NodeID
    public var clusterID: ClusterID
    /// The cluster's shared secret: keys the handshake's HMACs, never sent.
    public var secret: [UInt8]
    /// Where this node accepts peers (port 0: any free port, see `PeerTransport.listeningPort`).
    public var listen: PeerAddress
    /// The other nodes of the cluster and where they listen.
    public var peers: [NodeID: PeerAddress]

    /// The largest message on a connection (length prefix excluded). A peer that announces
    /// a larger one is closed: it is damaged or hostile. Every node of a cluster must use
    /// the same value: a frame one node sends must fit what the other takes.
    public var maximumMessageBytes = 64 << 20
    /// Bytes queued for one peer's frame connection beyond which `send` drops frames (Raft
    /// sends again); the host sees the drop as `false`.
    public var sendQueueBytes = 64 << 20
    /// Bulk requests in flight to one peer; beyond it `request` answers `.busy`.
    public var bulkRequestsInFlight = 64
    /// Bulk requests one peer may have this node serve at once; beyond it they are refused.
    public var bulkRequestsServed = 32
    /// A connection that has not completed the handshake within this is closed.
    public var handshakeTimeoutMilliseconds: Int64 = 2_000
    /// Inbound connections in their handshake at once; more are closed at once (a
    /// stranger opening many connections cannot use up this node's descriptors).
    public var maximumPendingHandshakes = 64
    /// New inbound connections one source host may open: `acceptBurst` at once, then
    /// `acceptsPerSecond`; beyond it they are closed before a byte is read (a node opens
    /// two per peer, and again only after a close with back-off).
    public var acceptsPerSecond = 16
    public var acceptBurst = 32
    /// A connection that receives nothing (not even the pings each end sends after a third
    /// of this without writing) for this long is closed and dialled again.
    public var idleTimeoutMilliseconds: Int64 = 10_000
    /// How long a bulk read, and a store or replica creation, may wait for its answer.
    public var bulkReadTimeoutMilliseconds: Int64 = 30_000
    public var bulkStoreTimeoutMilliseconds: Int64 = 600_000
    /// Reconnect back-off: full jitter between 0 and min(maximum, minimum × 2^attempt).
    public var reconnectMinimumMilliseconds = 50
    public var reconnectMaximumMilliseconds = 3_000
    /// Event-loop threads for all peer connections.
    public var eventLoopThreads = 1
    /// Mutual TLS on every peer connection (nil: plain TCP; the handshake's HMACs and the
    /// per-message tags still authenticate, but nothing is secret on the wire).
    public var tls: PeerTLS?

    public init(
        nodeID: NodeID, clusterID: ClusterID, secret: [UInt8], listen: PeerAddress, peers: [NodeID: PeerAddress]
    ) {
        self.nodeID = nodeID
        self.clusterID = clusterID
        self.secret = secret
        self.listen = listen
        self.peers = peers
    }

    /// The first problem with the configuration, or nil.
    public func validate() -> String? {
        if secret.count < 16 { return "the shared secret has \(secret.count) bytes; it needs at least 16" }
        if peers[nodeID] != nil { return "node \(nodeID) lists itself among its peers" }
        if maximumMessageBytes < BulkRequest.maximumReadBytes + 4096 {
            return "maximumMessageBytes must hold a bulk read of \(BulkRequest.maximumReadBytes) bytes"
        }
        if sendQueueBytes < maximumMessageBytes { return "sendQueueBytes must hold one message of maximumMessageBytes" }
        if bulkRequestsInFlight < 1 || bulkRequestsServed < 1 { return "bulk bounds must be at least 1" }
        if reconnectMinimumMilliseconds < 1 || reconnectMaximumMilliseconds < reconnectMinimumMilliseconds {
            return "reconnect back-off needs 1 ≤ minimum ≤ maximum"
        }
        if eventLoopThreads < 1 { return "eventLoopThreads must be at least 1" }
        if acceptsPerSecond < 1 || acceptBurst < 1 { return "acceptsPerSecond and acceptBurst must be positive" }
        if maximumPendingHandshakes < 1 || handshakeTimeoutMilliseconds < 1 || idleTimeoutMilliseconds < 3 {
            return "handshake and idle bounds must be positive"
        }
        return nil
    }
}

public enum PeerTransportError: Error, Equatable, Sendable, CustomStringConvertible {
    case configuration(String)
    case bind(String)

    public var description: String {
        switch self {
        case .configuration(let reason): "peer transport configuration: \(reason)"
        case .bind(let reason): "peer transport: \(reason)"
        }
    }
}

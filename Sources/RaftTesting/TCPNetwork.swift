import Logging
import NIOPosix
import RaftEngine
import RaftTransport
import Synchronization

/// How `LocalCluster` connects its hosts: the in-memory network, or real sockets.
public protocol ClusterNetwork: Sendable {
    /// Connects `node`, whose frames and bulk requests from peers go to `receiver`.
    func attach(_ node: NodeID, receiver: any FrameReceiver) throws -> any Transport
    /// Disconnects `node` (a crash: nothing it sends reaches anyone afterwards).
    func detach(_ node: NodeID)
}

extension InMemoryNetwork: ClusterNetwork {}

/// Real TCP on 127.0.0.1 between in-process hosts: each node gets a `PeerTransport` on a
/// free port, authenticated with one cluster ID and secret, and every other attached node
/// learns its address. The in-process cluster over the network transport, for tests and
/// benchmarks of the transport with real hosts.
public final class TCPNetwork: ClusterNetwork {
    public let clusterID: ClusterID
    public let nodes: [NodeID]
    public let secret: [UInt8]
    private let adjust: @Sendable (inout PeerTransportConfiguration) -> Void
    private let transports = Mutex<[NodeID: PeerTransport]>([:])
    /// The network's event-loop thread, shared by its nodes' transports and never shut
    /// down (a transport stopped from synchronous code leaves no timer on a dead loop; the
    /// thread ends with the process). One per network: tests running side by side do not
    /// queue behind each other's traffic.
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// `nodes`: every node of the cluster (each attaches later). `adjust` changes each
    /// node's transport configuration before it starts (bounds, time-outs).
    public init(
        clusterID: ClusterID, nodes: [NodeID], secret: [UInt8] = Array("in-process test secret".utf8),
        adjust: @escaping @Sendable (inout PeerTransportConfiguration) -> Void = { _ in }
    ) {
        self.clusterID = clusterID
        self.nodes = nodes
        self.secret = secret
        self.adjust = adjust
    }

    public func transport(_ node: NodeID) -> PeerTransport? { transports.withLock { $0[node] } }

    public func attach(_ node: NodeID, receiver: any FrameReceiver) throws -> any Transport {
        let running = transports.withLock { $0 }
        // A peer not attached yet is dialled at a port nobody listens on until it attaches.
        var peers: [NodeID: PeerAddress] = [:]
        for other in nodes where other != node {
            peers[other] = PeerAddress(host: "127.0.0.1", port: running[other]?.listeningPort ?? 1)
        }
        var configuration = PeerTransportConfiguration(
            nodeID: node, clusterID: clusterID, secret: secret, listen: PeerAddress(host: "127.0.0.1", port: 0),
            peers: peers)
        configuration.reconnectMaximumMilliseconds = 200
        adjust(&configuration)
        var logger = Logger(label: "raftd.transport")
        logger.logLevel = .warning
        let transport = try PeerTransport(configuration: configuration, logger: logger, group: group)
        try transport.startBlocking(receiver: receiver)
        let address = PeerAddress(host: "127.0.0.1", port: transport.listeningPort)
        for (_, other) in running { other.setAddress(of: node, to: address) }
        transports.withLock { $0[node] = transport }
        return transport
    }

    public func detach(_ node: NodeID) {
        transports.withLock { $0.removeValue(forKey: node) }?.stopBlocking()
    }
}

import RaftConsensus

/// One consensus message for one replica.
public struct PeerMessage: Sendable {
    public var partition: PartitionKey
    public var message: Message

    public init(partition: PartitionKey, message: Message) {
        self.partition = partition
        self.message = message
    }
}

/// Everything one node sends another in one turn: the messages of every group, batched,
/// plus the node-pair liveness signal. A frame without messages is a liveness heartbeat.
public struct PeerFrame: Sendable {
    public var from: NodeID
    public var to: NodeID
    /// Grows with each start of the sender (a counter in its storages' metadata): a new
    /// value tells the receiver the sender restarted (and so leads nothing any more); an
    /// older one marks late traffic of a dead process.
    public var senderBoot: UInt64
    public var messages: [PeerMessage]

    public init(from: NodeID, to: NodeID, senderBoot: UInt64, messages: [PeerMessage]) {
        self.from = from
        self.to = to
        self.senderBoot = senderBoot
        self.messages = messages
    }
}

/// Receives frames and bulk requests from peers (a `NodeHost`).
public protocol FrameReceiver: AnyObject, Sendable {
    func receive(_ frame: PeerFrame)

    /// Answers a bulk request from node `from` (attachments now, snapshots later).
    func serve(_ request: BulkRequest, from: NodeID) async -> BulkResponse
}

/// Moves frames between nodes. `send` never blocks: a transport that cannot take a frame
/// (queue full, peer unreachable) drops it and returns false, which Raft tolerates. The
/// network transport (a later issue) authenticates peers (cluster ID + secret) before any
/// frame is delivered.
///
/// Bulk requests travel on a path of their own (the network transport: a separate
/// connection per peer), so that a large transfer never delays a frame.
public protocol Transport: AnyObject, Sendable {
    @discardableResult
    func send(_ frame: PeerFrame) -> Bool

    /// Sends a bulk request to node `to` and waits for its answer. The caller bounds what
    /// it has in flight; the transport bounds its queues and answers `.busy` beyond them.
    func request(_ request: BulkRequest, to: NodeID) async throws(BulkError) -> BulkResponse
}

import RaftConsensus

/// One replica of a partition: the partition's cluster-wide key and the member ID the
/// replica has inside the partition's Raft group. Peer messages are addressed by it.
public struct ReplicaKey: Hashable, Sendable, CustomStringConvertible {
    public let partition: PartitionKey
    public let member: MemberID

    public init(partition: PartitionKey, member: MemberID) {
        self.partition = partition
        self.member = member
    }

    public var description: String { "\(partition)/\(member)" }
}

/// Which node serves which storage. Storage names are unique in the cluster, so a member's
/// storage (from the partition's routing entry) names the node to send its messages to.
/// Placement (a later issue) will change this at run time; for now it is fixed at start.
public struct ClusterMap: Sendable {
    public private(set) var nodes: [NodeID]
    private var storageNode: [StorageName: NodeID]

    public init(_ storagesByNode: [NodeID: [StorageName]]) throws(HostError) {
        nodes = storagesByNode.keys.sorted()
        storageNode = [:]
        for node in nodes {
            for storage in storagesByNode[node]! {
                if let other = storageNode[storage] {
                    throw .invalid("storage \(storage) is listed on both node \(other) and node \(node)")
                }
                storageNode[storage] = node
            }
        }
    }

    /// The node serving `storage`, or nil when the cluster does not know it.
    public func node(serving storage: StorageName) -> NodeID? { storageNode[storage] }

    /// The storages of `node`, sorted.
    public func storages(of node: NodeID) -> [StorageName] {
        storageNode.filter { $0.value == node }.map(\.key).sorted()
    }
}

/// A replica to create on this node: the partition, the member this replica is, the local
/// storage that holds it, and every replica of the group (its initial configuration).
public struct ReplicaSpec: Sendable {
    public var partition: PartitionKey
    public var member: MemberID
    public var storage: StorageName
    /// All replicas of the group, this one included.
    public var replicas: [RouteReplica]
    /// Whether this replica campaigns right away (one replica per new group should).
    public var campaign: Bool

    public init(
        partition: PartitionKey, member: MemberID, storage: StorageName, replicas: [RouteReplica],
        campaign: Bool = false
    ) {
        self.partition = partition
        self.member = member
        self.storage = storage
        self.replicas = replicas
        self.campaign = campaign
    }
}

/// How strongly a read must be ordered after writes.
public enum ReadConsistency: Hashable, Sendable {
    /// Linearizable: a ReadIndex round with a quorum (the default).
    case readIndex
    /// Linearizable if clocks drift less than the election timeout: the leader answers
    /// from its lease without a round trip when it can, and falls back to ReadIndex.
    case lease
}

/// Where a replica's in-memory state is.
public enum ReplicaResidency: String, Hashable, Sendable {
    /// Ticked, may send and receive.
    case awake
    /// Not ticked; its consensus state is in memory.
    case quiesced
    /// Shrunk to a compact record; rebuilt from the log on the next request or message.
    case dormant
    /// Waiting for its turn to campaign after its leader's node was declared dead.
    case awaitingCampaign
    /// Stopped after a storage or state machine failure.
    case failed
}

/// A replica's state as `NodeHost.status(of:)` reports it.
public struct ReplicaStatus: Hashable, Sendable, CustomStringConvertible {
    public var replica: ReplicaKey
    public var group: GroupID
    public var storage: StorageName
    public var role: RaftRole
    public var term: Term
    public var leader: MemberID
    public var commit: LogIndex
    /// Handed to the state machine (may still be in an apply worker's queue).
    public var handedToApply: LogIndex
    /// Applied by the state machine.
    public var applied: LogIndex
    public var lastIndex: LogIndex
    public var residency: ReplicaResidency

    public var description: String {
        "\(replica) \(group)@\(storage) \(role) term=\(term) leader=\(leader) commit=\(commit) applied=\(applied) last=\(lastIndex) \(residency.rawValue)"
    }
}

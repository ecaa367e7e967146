import RaftConsensus

/// A replica to create on this node: the partition, the member this replica is, the local
/// storage that holds it, and every replica of the group (its initial configuration).
public struct ReplicaSpec: Sendable, Equatable {
    public var partition: PartitionKey
    public var member: MemberID
    public var storage: StorageName
    /// All replicas of the group, this one included.
    public var replicas: [RouteReplica]
    /// Whether this replica campaigns right away (one replica per new group should).
    public var campaign: Bool
    /// `.local`: a single-replica partition written without Raft rounds or ticks.
    public var mode: ReplicationMode
    /// The version of `replicas` as a routing entry: (0, 0) for a new partition's members;
    /// a replica joining later gets its partition's current entry.
    public var routeVersion = RouteVersion(term: .zero, index: .zero)
    /// The configuration the group's log starts from, when it is not the one `replicas`
    /// describe: a replica that joins later starts from it and replays the log (or takes a
    /// snapshot), so it applies every change in order.
    public var startConf: ConfState?

    public init(
        partition: PartitionKey, member: MemberID, storage: StorageName, replicas: [RouteReplica],
        campaign: Bool = false, mode: ReplicationMode = .raft
    ) {
        self.mode = mode
        self.partition = partition
        self.member = member
        self.storage = storage
        self.replicas = replicas
        self.campaign = campaign
    }
}

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

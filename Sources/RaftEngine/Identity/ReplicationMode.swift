/// How a partition's writes are made durable on this storage.
///
/// Raft and non-Raft partitions live side by side in the same layout, and switching a
/// partition between the modes moves no data; only this registry field changes.
public enum ReplicationMode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Written by this storage alone: the same WAL and formats, each write committed as
    /// soon as it is durable, with no Raft round, no ticks and no other member.
    case local = 1
    /// A Raft group; every write goes through the replicated log.
    case raft = 2

    // The raw values are the on-disk codes; 0 is left unused so zeroed bytes never decode.

    public var description: String {
        switch self {
        case .local: "local"
        case .raft: "raft"
        }
    }
}

/// A Raft group's identity on one storage: the local ID under which the storage's shared WAL
/// and metadata know a replica (the partition registry maps a partition key to it).
///
/// 0 is invalid; 1 is reserved for the storage's own metadata.
public struct GroupID: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static let invalid = GroupID(0)
    public static let storageMetadata = GroupID(1)

    public static func < (lhs: GroupID, rhs: GroupID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "g\(rawValue)" }
}

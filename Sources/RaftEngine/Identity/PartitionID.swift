/// A partition's number on its authority storage (the storage that created it).
///
/// Minted by the authority's partition ID sequence, which starts at 2: 0 is never a
/// partition (refused here, so zeroed bytes cannot pass), and 1 is the storage's own
/// metadata partition (`storageMetadata`), which is never allocated to a repository.
public struct PartitionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Invariant: > 0.
    public let rawValue: UInt64

    public init(_ rawValue: UInt64) throws(IdentityError) {
        guard rawValue > 0 else { throw .invalidPartitionID(rawValue) }
        self.rawValue = rawValue
    }

    init(unchecked rawValue: UInt64) {
        precondition(rawValue > 0)
        self.rawValue = rawValue
    }

    /// The partition that holds the storage's own metadata; never handed out by a sequence.
    public static let storageMetadata = PartitionID(unchecked: 1)

    /// The first ID the sequence hands out.
    public static let firstAllocated = PartitionID(unchecked: 2)

    /// Whether this is the reserved storage metadata partition.
    public var isStorageMetadata: Bool { rawValue == 1 }

    public var description: String { String(rawValue) }

    public static func < (lhs: PartitionID, rhs: PartitionID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The incarnation of a storage. A storage that leaves the cluster and joins again gets the
/// next incarnation; data written under an older incarnation is never trusted again.
///
/// Incarnations start at 1; 0 is refused at the gateway so that zeroed bytes on disk or in
/// a message can never pass for a real incarnation.
public struct StorageIncarnation: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Invariant: > 0.
    public let rawValue: UInt64

    public init(_ rawValue: UInt64) throws(IdentityError) {
        guard rawValue > 0 else { throw .invalidIncarnation }
        self.rawValue = rawValue
    }

    /// The incarnation of a storage that has never left.
    public static let first = StorageIncarnation(unchecked: 1)

    private init(unchecked rawValue: UInt64) { self.rawValue = rawValue }

    /// The incarnation after this one.
    public var next: StorageIncarnation {
        precondition(rawValue < UInt64.max, "storage incarnation overflow")
        return StorageIncarnation(unchecked: rawValue + 1)
    }

    public var description: String { "i\(rawValue)" }

    public static func < (lhs: StorageIncarnation, rhs: StorageIncarnation) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The identity of a group member. Zero means "nobody" (no leader known, no vote cast).
public struct MemberID: Comparable, Hashable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The raw identifier.
    public var rawValue: UInt64
    /// Wraps a raw identifier.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }
    /// The absent member.
    public static let none = MemberID(0)
    public static func < (lhs: MemberID, rhs: MemberID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
}

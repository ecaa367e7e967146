/// A Raft term. Terms only grow; a larger term always wins a comparison of authority.
public struct Term: Comparable, Hashable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The raw counter value.
    public var rawValue: UInt64
    /// Wraps a raw term number.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }
    /// Term zero: nothing has happened yet (also used for "unknown").
    public static let zero = Term(0)
    public static func < (lhs: Term, rhs: Term) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
    /// The following term.
    public var next: Term { Term(rawValue + 1) }
}

/// A position in the replicated log. Index 0 is the empty log sentinel; the first real entry is 1.
public struct LogIndex: Comparable, Hashable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral, Strideable
{
    /// The raw position.
    public var rawValue: UInt64
    /// Wraps a raw index.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }
    /// The sentinel index that precedes every entry.
    public static let zero = LogIndex(0)
    public static func < (lhs: LogIndex, rhs: LogIndex) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
    public func distance(to other: LogIndex) -> Int { Int(Int64(bitPattern: other.rawValue &- rawValue)) }
    public func advanced(by n: Int) -> LogIndex { LogIndex(UInt64(Int64(bitPattern: rawValue) + Int64(n))) }
    /// The next index.
    public var next: LogIndex { LogIndex(rawValue + 1) }
    /// The previous index; the sentinel stays at zero.
    public var previous: LogIndex { rawValue == 0 ? self : LogIndex(rawValue - 1) }
}

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

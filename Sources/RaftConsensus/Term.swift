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

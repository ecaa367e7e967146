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

/// What a log entry carries.
public enum EntryPayload: Hashable, Sendable {
    /// Opaque application bytes (empty for the no-op a new leader appends).
    case normal([UInt8])
    /// A membership change; the caller applies it with `RawNode.applyConfChange` once committed.
    case confChange(ConfChange)
}

/// One replicated log entry.
public struct Entry: Hashable, Sendable, CustomStringConvertible {
    /// Term of the leader that created the entry.
    public var term: Term
    /// Position in the log.
    public var index: LogIndex
    /// The content.
    public var payload: EntryPayload

    public init(term: Term, index: LogIndex, payload: EntryPayload) {
        self.term = term
        self.index = index
        self.payload = payload
    }

    /// Bytes this entry counts for in flow control and size limits. Conf changes are small
    /// fixed-size records; we charge them a nominal size so they are never "free".
    public var payloadSize: Int {
        switch payload {
        case .normal(let bytes): return bytes.count
        case .confChange(let cc): return 8 + 9 * cc.changes.count
        }
    }

    /// True for a conf change entry.
    public var isConfChange: Bool {
        if case .confChange = payload { return true }
        return false
    }

    /// Stable text used by golden tests: `index@term kind content`.
    public var description: String {
        switch payload {
        case .normal(let bytes):
            return bytes.isEmpty ? "\(index)@\(term) empty" : "\(index)@\(term) \(Describe.bytes(bytes))"
        case .confChange(let cc):
            return "\(index)@\(term) conf(\(cc))"
        }
    }
}

import RaftConsensus

/// One log entry as the WAL stores it: the consensus layer's entry with its payload encoded.
public struct WALEntry: Equatable, Sendable {
    public var term: Term
    public var index: LogIndex
    /// What the payload is (normal data, a configuration change, …), chosen by the layer above.
    public var kind: UInt8
    public var payload: [UInt8]

    public init(term: Term, index: LogIndex, kind: UInt8 = 0, payload: [UInt8]) {
        self.term = term
        self.index = index
        self.kind = kind
        self.payload = payload
    }
}

/// The point a group's log restarts from after a snapshot was installed: every entry is
/// dropped, and the log continues at `index + 1`, whose predecessor has `term`.
public struct LogReset: Equatable, Sendable {
    public var index: LogIndex
    public var term: Term

    public init(index: LogIndex, term: Term) {
        self.index = index
        self.term = term
    }
}

/// What one group writes in one turn: a reset of its log to a snapshot, new entries
/// (possibly replacing a conflicting suffix) and/or a new hard state, in that order.
/// Durable together with everything else in its batch.
public struct GroupWrite: Sendable {
    public var group: GroupID
    /// The log is replaced by a snapshot first (a truncation and a compaction record):
    /// `entries` then start at its index + 1.
    public var reset: LogReset?
    /// Consecutive indexes. If the first index is at or below the group's last index, the
    /// log from that index on is replaced (a truncation record is written first).
    public var entries: [WALEntry]
    public var hardState: HardState?

    public init(group: GroupID, reset: LogReset? = nil, entries: [WALEntry] = [], hardState: HardState? = nil) {
        self.group = group
        self.reset = reset
        self.entries = entries
        self.hardState = hardState
    }

    /// Bytes this write adds to a batch.
    var encodedSize: Int {
        var size = entries.reduce(0) { $0 + WALFormat.recordSize(payload: $1.payload.count) }
        if hardState != nil { size += WALFormat.recordSize(payload: 8) }
        // A possible truncation record; a reset's truncation and compaction.
        if reset != nil { size += 2 * WALFormat.recordSize(payload: 0) }
        return size + WALFormat.recordSize(payload: 0)
    }
}

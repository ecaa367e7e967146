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

/// What one group writes in one turn: new entries (possibly replacing a conflicting suffix)
/// and/or a new hard state. Durable together with everything else in its batch.
public struct GroupWrite: Sendable {
    public var group: GroupID
    /// Consecutive indexes. If the first index is at or below the group's last index, the
    /// log from that index on is replaced (a truncation record is written first).
    public var entries: [WALEntry]
    public var hardState: HardState?

    public init(group: GroupID, entries: [WALEntry] = [], hardState: HardState? = nil) {
        self.group = group
        self.entries = entries
        self.hardState = hardState
    }

    /// Bytes this write adds to a batch.
    var encodedSize: Int {
        var size = entries.reduce(0) { $0 + WALFormat.recordSize(payload: $1.payload.count) }
        if hardState != nil { size += WALFormat.recordSize(payload: 8) }
        // A possible truncation record.
        return size + WALFormat.recordSize(payload: 0)
    }
}

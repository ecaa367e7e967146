import RaftConsensus

/// Every group's `GroupLog`, and the one function that applies a record to them. Replay at
/// open and the writer after each durable batch both call `apply`, so the index after a
/// restart is the index before it.
struct LogTable {
    var groups: [GroupID: GroupLog] = [:]

    /// Applies one verified record found at `location`. `vote` is the decoded payload of a
    /// hard-state record. `replaying`: the record comes from a scan at open (see
    /// `GroupLog.appendEntry`), not from a batch the writer just validated.
    mutating func apply(_ header: RecordHeader, at location: RecordLocation, vote: MemberID, replaying: Bool) {
        let group = header.group
        switch header.type {
        case .entry:
            groups[group, default: GroupLog()].appendEntry(
                index: header.index, term: header.term,
                at: EntryLocation(segment: location.segment, offset: location.offset, length: UInt32(header.length)),
                replaying: replaying)
        case .hardState:
            groups[group, default: GroupLog()].setHardState(
                HardState(term: header.term, vote: vote, commit: header.index), at: location)
        case .truncate:
            groups[group]?.truncate(from: header.index)
        case .compact:
            groups[group, default: GroupLog()].compact(upTo: header.index, term: header.term, at: location)
        case .removeGroup:
            groups[group] = nil
        }
    }

    /// The oldest segment any group still needs, or nil when none needs any.
    var oldestPinnedSegment: UInt64? {
        var oldest: UInt64?
        for log in groups.values {
            if let pinned = log.pinnedSegment, oldest == nil || pinned < oldest! { oldest = pinned }
        }
        return oldest
    }
}

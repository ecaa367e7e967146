/// The log as the consensus core sees it: a stable prefix in caller-owned storage followed
/// by unstable entries held in memory, plus the commit and applied cursors.
public struct RaftLog {
    let stable: any StableLog
    public private(set) var unstable: UnstableLog
    /// Highest index known to be committed (durably on a quorum).
    public private(set) var committed: LogIndex
    /// Highest index handed to the application and acknowledged via `advance`.
    public private(set) var applied: LogIndex
    /// Highest index handed to the application in an outstanding Ready.
    var applying: LogIndex
    /// Cap on the bytes of committed entries returned in one Ready.
    let maxApplyBytes: Int

    init(stable: any StableLog, applied: LogIndex, maxApplyBytes: Int) {
        self.stable = stable
        let first = stable.firstIndex
        unstable = UnstableLog(offset: stable.lastIndex.next)
        committed = first.previous
        self.applied = max(applied, first.previous)
        applying = self.applied
        self.maxApplyBytes = maxApplyBytes
    }

    public var firstIndex: LogIndex { unstable.firstIndexIfKnown ?? stable.firstIndex }
    public var lastIndex: LogIndex { unstable.lastIndexIfKnown ?? stable.lastIndex }
    public var lastTerm: Term { (try? term(at: lastIndex).get()) ?? .zero }

    /// Last index that is known durable (entries beyond it are only in memory).
    var persistedLastIndex: LogIndex {
        if unstable.snapshot != nil { return .zero }
        return unstable.entries.isEmpty ? lastIndex : unstable.offset.previous
    }

    /// Term at `index`, or why it cannot be known.
    public func term(at index: LogIndex) -> Result<Term, StableLogError> {
        let dummy = firstIndex.previous
        if index < dummy { return .failure(.compacted) }
        if index > lastIndex { return .failure(.unavailable) }
        if let t = unstable.term(at: index) { return .success(t) }
        return stable.term(at: index)
    }

    /// Term at `index`, or zero if unknown (compacted or missing).
    func termOrZero(_ index: LogIndex) -> Term { (try? term(at: index).get()) ?? .zero }

    func matchTerm(_ index: LogIndex, _ t: Term) -> Bool {
        if case .success(let x) = term(at: index) { return x == t }
        return false
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours.
    func isUpToDate(lastIndex idx: LogIndex, term t: Term) -> Bool {
        t > lastTerm || (t == lastTerm && idx >= lastIndex)
    }

    /// Appends a leader's entries after (index, logTerm) if our log matches there.
    /// Returns the last index now known to match the leader, or nil on mismatch.
    mutating func maybeAppend(index: LogIndex, logTerm: Term, commit: LogIndex, entries: [Entry]) -> LogIndex? {
        guard matchTerm(index, logTerm) else { return nil }
        let lastNew = LogIndex(index.rawValue + UInt64(entries.count))
        if let conflict = findConflict(entries) {
            precondition(conflict > committed, "conflict at \(conflict) with committed entry (commit \(committed))")
            append(entries[Int(conflict.rawValue - index.rawValue - 1)...])
        }
        commitTo(min(commit, lastNew))
        return lastNew
    }

    /// First entry whose index is new or whose term disagrees with ours.
    func findConflict(_ entries: [Entry]) -> LogIndex? {
        for e in entries where !matchTerm(e.index, e.term) { return e.index }
        return nil
    }

    /// Fast back-off: the largest index ≤ `index` whose term is ≤ `t`, with that term.
    /// Entries above it cannot match a log whose entry at `index` has term `t`.
    func findConflictByTerm(_ index: LogIndex, _ t: Term) -> (LogIndex, Term) {
        var i = index
        while true {
            switch term(at: i) {
            case .success(let ours):
                if ours <= t { return (i, ours) }
                if i == .zero { return (i, ours) }
                i = i.previous
            case .failure:
                return (i, .zero)
            }
        }
    }

    mutating func append(_ entries: ArraySlice<Entry>) {
        guard let first = entries.first else { return }
        precondition(first.index > committed, "appending at \(first.index) would overwrite committed \(committed)")
        unstable.truncateAndAppend(entries)
    }

    mutating func commitTo(_ index: LogIndex) {
        guard index > committed else { return }
        precondition(index <= lastIndex, "commit \(index) beyond last index \(lastIndex)")
        committed = index
    }

    /// Leader rule: only entries of the current term commit by counting replicas (§5.4.2).
    mutating func maybeCommit(_ index: LogIndex, term t: Term) -> Bool {
        guard index > committed, termOrZero(index) == t else { return false }
        commitTo(index)
        return true
    }

    mutating func appliedTo(_ index: LogIndex) {
        guard index > applied else { return }
        precondition(index <= committed, "applied \(index) beyond committed \(committed)")
        applied = index
        applying = max(applying, index)
    }

    /// Committed entries not yet handed to the application.
    var hasNextCommittedEntries: Bool {
        let lo = max(applying.next, firstIndex)
        return committed >= lo
    }

    func nextCommittedEntries() -> [Entry] {
        let lo = max(applying.next, firstIndex)
        guard committed >= lo else { return [] }
        return (try? slice(lo, committed.next, maxBytes: maxApplyBytes).get()) ?? []
    }

    /// Entries from `low` on, capped by `maxBytes` (at least one entry if any exist).
    func entries(from low: LogIndex, maxBytes: Int) -> Result<[Entry], StableLogError> {
        if low > lastIndex { return .success([]) }
        return slice(low, lastIndex.next, maxBytes: maxBytes)
    }

    /// Entries in `[low, high)` across stable and unstable parts.
    func slice(_ low: LogIndex, _ high: LogIndex, maxBytes: Int) -> Result<[Entry], StableLogError> {
        if low < firstIndex { return .failure(.compacted) }
        precondition(high <= lastIndex.next, "slice beyond last index")
        if low >= high { return .success([]) }
        var out: [Entry] = []
        if low < unstable.offset {
            let storedHigh = min(high, unstable.offset)
            switch stable.entries(from: low, to: storedHigh, maxBytes: maxBytes) {
            case .failure(let e): return .failure(e)
            case .success(let got):
                out = got
                // A short read means the size cap was hit: stop here.
                if LogIndex(low.rawValue + UInt64(got.count)) < storedHigh { return .success(out) }
            }
        }
        if high > unstable.offset {
            let lo = max(low, unstable.offset)
            let part = unstable.slice(lo, high)
            if out.isEmpty {
                out = MemoryStableLog.limitSize(part, maxBytes: maxBytes)
            } else {
                var used = out.reduce(0) { $0 + $1.payloadSize }
                for e in part {
                    used += e.payloadSize
                    if used > maxBytes { break }
                    out.append(e)
                }
            }
        }
        return .success(out)
    }

    mutating func stableTo(_ index: LogIndex, term: Term) { unstable.stableTo(index, term: term) }
    mutating func acceptUnstableInProgress() { unstable.acceptInProgress() }
    mutating func stableSnapshotTo(_ index: LogIndex) { unstable.stableSnapshotTo(index) }

    /// Replaces the log with a snapshot from the leader.
    mutating func restore(_ snap: Snapshot) {
        committed = snap.metadata.index
        unstable.restore(snap)
    }

    /// Marks the start of applying entries through `index`.
    mutating func acceptApplying(_ index: LogIndex) { applying = max(applying, index) }

    /// After a snapshot is installed the application state jumps to its index.
    mutating func snapshotApplied(_ index: LogIndex) {
        if index > applied { applied = index }
        if index > applying { applying = index }
    }
}

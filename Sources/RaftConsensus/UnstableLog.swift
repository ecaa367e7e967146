/// Entries (and at most one snapshot) the core has accepted but the caller has not yet
/// persisted. `entries[i]` has index `offset + i`. Once the caller reports them durable via
/// `advance`, they are dropped here and read from `StableLog` instead.
///
/// Entries below `offsetInProgress` were handed to the caller in a Ready (being persisted,
/// or persisted and then partly replaced, so their `stableTo` did not match); a Ready hands
/// out only the entries from `offsetInProgress` on. So a write starts where the caller's log
/// first differs: at the end of what it was given, or at a conflict. Never lower: the WAL
/// writes a truncation at a write's first index, and a crash inside that write may leave the
/// truncation without the rest, which must only ever cut entries that are not committed
/// (docs/CONSENSUS.md, "Writes start at the conflict"). This is etcd's `offsetInProgress`.
public struct UnstableLog: Sendable {
    /// A snapshot received from the leader, waiting to be persisted.
    public private(set) var snapshot: Snapshot?
    public private(set) var entries: [Entry] = []
    /// Index of `entries[0]`.
    public private(set) var offset: LogIndex
    /// The first entry not yet handed out in a Ready. Invariant:
    /// `offset <= offsetInProgress <= offset + entries.count`.
    public private(set) var offsetInProgress: LogIndex
    /// The snapshot was handed out in a Ready and is being persisted.
    public private(set) var snapshotInProgress = false

    public init(offset: LogIndex) {
        self.offset = offset
        self.offsetInProgress = offset
    }

    private var end: LogIndex { LogIndex(offset.rawValue + UInt64(entries.count)) }

    /// The entries a Ready must persist: those not handed out yet.
    public var entriesToPersist: ArraySlice<Entry> { entries[Int(offsetInProgress.rawValue - offset.rawValue)...] }

    /// The snapshot a Ready must persist, unless one already carries it.
    public var snapshotToPersist: Snapshot? { snapshotInProgress ? nil : snapshot }

    /// Everything now held was handed out in a Ready.
    public mutating func acceptInProgress() {
        offsetInProgress = end
        if snapshot != nil { snapshotInProgress = true }
    }

    /// First index if the unstable part determines it (only when holding a snapshot).
    public var firstIndexIfKnown: LogIndex? { snapshot.map { $0.metadata.index.next } }

    /// Last index if the unstable part determines it.
    public var lastIndexIfKnown: LogIndex? {
        if !entries.isEmpty { return LogIndex(offset.rawValue + UInt64(entries.count) - 1) }
        return snapshot?.metadata.index
    }

    /// Term at `index` if the unstable part knows it.
    public func term(at index: LogIndex) -> Term? {
        if index < offset {
            if let s = snapshot, s.metadata.index == index { return s.metadata.term }
            return nil
        }
        guard let last = lastIndexIfKnown, index <= last else { return nil }
        return entries[Int(index.rawValue - offset.rawValue)].term
    }

    /// The caller persisted entries through `index` (with `term`): drop them. The term check
    /// guards against entries that were replaced after they were handed out.
    public mutating func stableTo(_ index: LogIndex, term: Term) {
        guard let t = self.term(at: index), t == term, index >= offset else { return }
        let n = Int(index.rawValue - offset.rawValue) + 1
        entries.removeFirst(n)
        offset = index.next
        offsetInProgress = max(offsetInProgress, offset)
        if entries.isEmpty && entries.capacity > 4096 { entries = [] }
    }

    /// The caller persisted the snapshot at `index`.
    public mutating func stableSnapshotTo(_ index: LogIndex) {
        if let s = snapshot, s.metadata.index == index {
            snapshot = nil
            snapshotInProgress = false
        }
    }

    /// Replaces everything with a snapshot.
    public mutating func restore(_ snap: Snapshot) {
        offset = snap.metadata.index.next
        offsetInProgress = offset
        entries = []
        snapshot = snap
        snapshotInProgress = false
    }

    /// Appends a consistent run, truncating any conflicting suffix first.
    public mutating func truncateAndAppend(_ newEntries: ArraySlice<Entry>) {
        guard let first = newEntries.first?.index else { return }
        if first == end {
            entries.append(contentsOf: newEntries)
        } else if first <= offset {
            // Everything we hold is replaced (the stable log is truncated by the caller when
            // it persists these entries).
            offset = first
            offsetInProgress = first
            entries = Array(newEntries)
        } else {
            // Entries before `first` stay, handed out or not; the next Ready starts at `first`
            // at the latest.
            entries.removeSubrange(Int(first.rawValue - offset.rawValue)...)
            entries.append(contentsOf: newEntries)
            offsetInProgress = min(offsetInProgress, first)
        }
    }

    /// Entries in `[low, high)`; the range must lie within the unstable entries.
    public func slice(_ low: LogIndex, _ high: LogIndex) -> ArraySlice<Entry> {
        precondition(
            low >= offset && high.rawValue <= offset.rawValue + UInt64(entries.count) && low <= high,
            "unstable slice \(low)..<\(high) out of \(offset)+\(entries.count)")
        return entries[Int(low.rawValue - offset.rawValue)..<Int(high.rawValue - offset.rawValue)]
    }
}

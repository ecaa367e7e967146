/// An in-memory `StableLog` used by tests, the simulator and the benchmark. It also models
/// what survives a crash: everything written here is "durable".
public final class MemoryStableLog: StableLog {
    /// Persisted hard state.
    public private(set) var hardState = HardState.empty
    /// Latest snapshot; its metadata also gives the index/term preceding `entriesStore`.
    public private(set) var latestSnapshot = Snapshot.empty
    /// entriesStore[0] is a placeholder carrying the snapshot's index/term; real entries follow.
    private var entriesStore: [Entry]

    /// Creates an empty storage; `confState` seeds the initial membership (bootstrap).
    public init(confState: ConfState = ConfState()) {
        latestSnapshot.metadata.confState = confState
        entriesStore = [Entry(term: .zero, index: .zero, payload: .normal([]))]
    }

    private var offset: LogIndex { entriesStore[0].index }

    public func initialState() -> (HardState, ConfState) { (hardState, latestSnapshot.metadata.confState) }

    public var firstIndex: LogIndex { offset.next }
    public var lastIndex: LogIndex { LogIndex(offset.rawValue + UInt64(entriesStore.count - 1)) }

    public func term(at index: LogIndex) -> Result<Term, StableLogError> {
        if index < offset { return .failure(.compacted) }
        if index > lastIndex { return .failure(.unavailable) }
        return .success(entriesStore[Int(index.rawValue - offset.rawValue)].term)
    }

    public func entries(from low: LogIndex, to high: LogIndex, maxBytes: Int) -> Result<[Entry], StableLogError> {
        if low <= offset { return .failure(.compacted) }
        precondition(high <= lastIndex.next, "entries(\(low)..<\(high)) beyond last index \(lastIndex)")
        if low >= high { return .success([]) }
        let lo = Int(low.rawValue - offset.rawValue), hi = Int(high.rawValue - offset.rawValue)
        return .success(Self.limitSize(entriesStore[lo..<hi], maxBytes: maxBytes))
    }

    /// Returns the longest prefix within `maxBytes` (at least one entry).
    static func limitSize(_ slice: ArraySlice<Entry>, maxBytes: Int) -> [Entry] {
        var total = 0
        var end = slice.startIndex
        while end < slice.endIndex {
            total += slice[end].payloadSize
            if end > slice.startIndex && total > maxBytes { break }
            end += 1
        }
        return Array(slice[slice.startIndex..<end])
    }

    public func snapshot() -> Result<Snapshot, StableLogError> { .success(latestSnapshot) }

    /// Persists the hard state.
    public func setHardState(_ hs: HardState) { hardState = hs }

    /// Persists entries, replacing any conflicting suffix (the core only sends consistent runs).
    public func append(_ newEntries: [Entry]) {
        guard let first = newEntries.first else { return }
        // Entries already covered by the snapshot are ignored.
        if newEntries.last!.index < firstIndex { return }
        var toAdd = newEntries[...]
        if first.index < firstIndex { toAdd = newEntries[Int(firstIndex.rawValue - first.index.rawValue)...] }
        let start = toAdd.first!.index
        precondition(start <= lastIndex.next, "gap in log: append at \(start) after \(lastIndex)")
        let keep = Int(start.rawValue - offset.rawValue)
        if keep < entriesStore.count { entriesStore.removeSubrange(keep...) }
        entriesStore.append(contentsOf: toAdd)
    }

    /// Replaces the whole log with a snapshot received from the leader.
    public func applySnapshot(_ snap: Snapshot) {
        guard snap.metadata.index > latestSnapshot.metadata.index else { return }
        latestSnapshot = snap
        entriesStore = [Entry(term: snap.metadata.term, index: snap.metadata.index, payload: .normal([]))]
    }

    /// Records a locally produced snapshot at an applied index (which must be stored here).
    public func createSnapshot(at index: LogIndex, confState: ConfState, data: [UInt8]) {
        guard index > latestSnapshot.metadata.index else { return }
        precondition(index <= lastIndex, "snapshot at \(index) beyond last index \(lastIndex)")
        let t = entriesStore[Int(index.rawValue - offset.rawValue)].term
        latestSnapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: t, confState: confState), data: data)
    }

    /// Drops entries up to and including `index` (which must be covered by the snapshot).
    public func compact(through index: LogIndex) {
        guard index > offset else { return }
        precondition(index <= latestSnapshot.metadata.index, "compacting past the snapshot")
        precondition(index <= lastIndex, "compacting past the last index")
        let cut = Int(index.rawValue - offset.rawValue)
        let placeholder = Entry(term: entriesStore[cut].term, index: index, payload: .normal([]))
        entriesStore.removeSubrange(0...cut)
        entriesStore.insert(placeholder, at: 0)
    }

    /// All stored entries (test helper).
    public var allEntries: [Entry] { Array(entriesStore.dropFirst()) }
}

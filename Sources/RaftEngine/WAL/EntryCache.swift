import RaftConsensus

/// The most recent entries of every group, bounded in bytes, so that followers catching up
/// and the apply path read memory instead of disk.
///
/// Each group caches a contiguous run ending at its last durable entry. Eviction is global
/// and oldest-first (the order entries were added), so a burst on one group cannot keep
/// another group's fresh entries out for long.
///
/// Invariant: `bytes` is the sum of the payload sizes held in `groups`; every cached entry
/// equals the durable entry at its index.
struct EntryCache {
    private struct Run {
        var first: LogIndex
        var entries: [WALEntry]
        var headOffset = 0  // entries[..<headOffset] are evicted (lazy removal)

        var firstLive: LogIndex { LogIndex(first.rawValue + UInt64(headOffset)) }
        var next: LogIndex { LogIndex(first.rawValue + UInt64(entries.count)) }
        var count: Int { entries.count - headOffset }

        /// Evicts the oldest live entry; returns its size. The payload is released at once.
        mutating func evictFirst() -> Int {
            let size = entries[headOffset].payload.count + 64
            entries[headOffset].payload = []
            headOffset += 1
            compactIfSparse()
            return size
        }

        /// Drops evicted slots once they are most of the array.
        mutating func compactIfSparse() {
            if headOffset > 64 && headOffset * 2 > entries.count {
                entries.removeFirst(headOffset)
                first = LogIndex(first.rawValue + UInt64(headOffset))
                headOffset = 0
            }
        }
    }

    let capacityBytes: Int
    private(set) var bytes = 0
    /// Entries held (for bounding `order`, which keeps stale items until they are popped).
    private(set) var count = 0
    private var groups: [GroupID: Run] = [:]
    /// (group, index, size) in the order added; stale items are skipped when popped.
    private var order: [(GroupID, LogIndex, Int)] = []
    private var orderHead = 0

    init(capacityBytes: Int) {
        self.capacityBytes = capacityBytes
    }

    /// Adds `entry` as the group's newest entry (after the durable write). A gap or an
    /// overwrite resets the group's run.
    mutating func add(_ group: GroupID, _ entry: WALEntry) {
        guard capacityBytes > 0 else { return }
        let size = entry.payload.count + 64
        // Dictionary positions and `values[i]` mutate runs in place: one hash per add in the
        // common case (the entry extends the group's run).
        if let i = groups.index(forKey: group) {
            let next = groups.values[i].next
            if entry.index == next {
                groups.values[i].entries.append(entry)
            } else {
                // An overwrite inside the run keeps the entries before it; anything else
                // (a gap, or an overwrite before the run) starts a new run.
                let firstLive = groups.values[i].firstLive
                drop(group, from: entry.index > firstLive && entry.index < next ? entry.index : .zero)
                if let j = groups.index(forKey: group) {
                    groups.values[j].entries.append(entry)
                } else {
                    groups[group] = Run(first: entry.index, entries: [entry])
                }
            }
        } else {
            groups[group] = Run(first: entry.index, entries: [entry])
        }
        bytes += size
        count += 1
        order.append((group, entry.index, size))
        evictToCapacity()
        if order.count - orderHead > 2 * count + 4096 { pruneOrder() }
    }

    /// The cached entry at `index`, if any.
    func entry(_ group: GroupID, _ index: LogIndex) -> WALEntry? {
        guard let run = groups[group], index >= run.firstLive else { return nil }
        let position = Int(index.rawValue - run.first.rawValue)
        return position < run.entries.count ? run.entries[position] : nil
    }

    /// Forgets the group's entries from `index` on (`.zero`: all of them).
    mutating func drop(_ group: GroupID, from index: LogIndex) {
        guard var run = groups[group] else { return }
        let liveFirst = run.firstLive
        if index <= liveFirst {
            for e in run.entries[run.headOffset...] { bytes -= e.payload.count + 64 }
            count -= run.count
            groups[group] = nil
            return
        }
        let keep = Int(index.rawValue - run.first.rawValue)
        guard keep < run.entries.count else { return }
        groups[group] = nil
        for e in run.entries[keep...] { bytes -= e.payload.count + 64 }
        count -= run.entries.count - keep
        run.entries.removeSubrange(keep...)
        groups[group] = run
    }

    /// Forgets the group's entries up to and including `index`.
    mutating func dropThrough(_ group: GroupID, _ index: LogIndex) {
        guard var run = groups[group], index >= run.firstLive else { return }
        let last = LogIndex(run.first.rawValue + UInt64(run.entries.count) - 1)
        if index >= last {
            drop(group, from: .zero)
            return
        }
        groups[group] = nil
        let upTo = Int(index.rawValue - run.first.rawValue)
        for e in run.entries[run.headOffset...upTo] { bytes -= e.payload.count + 64 }
        count -= upTo + 1 - run.headOffset
        run.headOffset = upTo + 1
        run.compactIfSparse()
        groups[group] = run
    }

    private mutating func evictToCapacity() {
        while bytes > capacityBytes && orderHead < order.count {
            let (group, index, _) = order[orderHead]
            orderHead += 1
            // Only the oldest live entry of a run can be evicted from the front.
            guard let i = groups.index(forKey: group), groups.values[i].count > 0, groups.values[i].firstLive == index
            else { continue }
            bytes -= groups.values[i].evictFirst()
            count -= 1
            if groups.values[i].count == 0 { groups.remove(at: i) }
        }
        if orderHead > 4096 && orderHead * 2 > order.count {
            order.removeFirst(orderHead)
            orderHead = 0
        }
    }

    /// Drops the stale items of `order` (entries dropped by truncation or compaction).
    private mutating func pruneOrder() {
        order = order[orderHead...].filter { item in
            guard let run = groups[item.0] else { return false }
            return item.1 >= run.firstLive && item.1.rawValue < run.first.rawValue + UInt64(run.entries.count)
        }
        orderHead = 0
    }
}

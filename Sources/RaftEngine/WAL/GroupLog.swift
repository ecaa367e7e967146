import RaftConsensus

/// Where a record lives: segment sequence and the offset of its header in that segment.
struct RecordLocation: Equatable {
    var segment: UInt64
    var offset: UInt32
}

/// Where an entry's record lives, and its payload length (so a read knows how much to fetch).
struct EntryLocation: Equatable {
    var segment: UInt64
    var offset: UInt32
    var length: UInt32
}

/// One group's view of the shared WAL: which entries exist, where, and with which terms.
/// Built by replay at open and kept up to date by the writer; the same `apply` runs in
/// both, so recovery and live writes cannot disagree.
///
/// Invariant: `locations[k]` is the entry at index `base + 1 + k`; `runStarts`/`runTerms`
/// cover exactly `base + 1 ... last`, with strictly increasing starts and non-decreasing terms.
struct GroupLog {
    /// Entries at or below `base` are compacted (or never existed here).
    var base: LogIndex = .zero
    /// The term of the entry at `base`, when a compaction recorded it (zero otherwise).
    var baseTerm: Term = .zero
    var locations: [EntryLocation] = []
    /// Payload bytes of the entries up to and including `locations[k]`, counted from an
    /// arbitrary origin (differences only): the bytes of any range in O(1).
    var cumulativeBytes: [UInt64] = []
    var runStarts: [LogIndex] = []
    var runTerms: [Term] = []
    var hardState: HardState?
    var hardStateAt: RecordLocation?
    var compactAt: RecordLocation?

    var firstIndex: LogIndex { base.next }
    var lastIndex: LogIndex { LogIndex(base.rawValue + UInt64(locations.count)) }
    var isEmpty: Bool { locations.isEmpty && hardState == nil && compactAt == nil }

    /// The term of the entry at `index`, if this log knows it.
    func term(at index: LogIndex) -> Term? {
        if index == base { return baseTerm }
        guard index > base, index <= lastIndex else { return nil }
        // The last run whose start is <= index.
        var lo = 0
        var hi = runStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if runStarts[mid] <= index { lo = mid } else { hi = mid - 1 }
        }
        return runTerms[lo]
    }

    func location(of index: LogIndex) -> EntryLocation? {
        guard index > base, index <= lastIndex else { return nil }
        return locations[Int(index.rawValue - base.rawValue - 1)]
    }

    /// Why a live write cannot put an entry at `index` with `term`, or nil when it can.
    /// (Replay does not ask: the log on disk was validated when it was written.)
    func refusal(index: LogIndex, term: Term) -> String? {
        if index <= base { return "index \(index) is at or below the compacted index \(base)" }
        if index > lastIndex.next { return "index \(index) leaves a gap after the last index \(lastIndex)" }
        if let previous = self.term(at: index.previous), term < previous {
            return "term \(term) at index \(index) is below the previous entry's term \(previous)"
        }
        return nil
    }

    /// Adds the entry at `index`, replacing any entries from `index` on.
    ///
    /// A gap (or an index at or below the compacted one) cannot come from a live write
    /// (the writer validates first), so `replaying` must be set for it to be accepted: replay
    /// reads a suffix of the segments, and records older than a group's live region may
    /// survive while the records that connected them were deleted. Everything before such
    /// a gap is dead, and a later live compaction record restores `base` and its term.
    mutating func appendEntry(index: LogIndex, term: Term, at location: EntryLocation, replaying: Bool) {
        if index > lastIndex.next || index <= base {
            precondition(replaying, "entry \(index) does not follow \(lastIndex) (compacted \(base))")
            locations.removeAll()
            cumulativeBytes.removeAll()
            runStarts.removeAll()
            runTerms.removeAll()
            base = index.previous
            baseTerm = .zero
            compactAt = nil
        }
        if index <= lastIndex { truncate(from: index) }
        locations.append(location)
        cumulativeBytes.append((cumulativeBytes.last ?? 0) + UInt64(location.length))
        if runTerms.last != term {
            runStarts.append(index)
            runTerms.append(term)
        }
    }

    mutating func setHardState(_ state: HardState, at location: RecordLocation) {
        hardState = state
        hardStateAt = location
    }

    /// Drops the entries from `index` on.
    mutating func truncate(from index: LogIndex) {
        guard index <= lastIndex else { return }
        let keep = index > base ? Int(index.rawValue - base.rawValue - 1) : 0
        locations.removeSubrange(keep...)
        cumulativeBytes.removeSubrange(keep...)
        if keep == 0 {
            runStarts.removeAll()
            runTerms.removeAll()
            return
        }
        while let start = runStarts.last, start >= index {
            runStarts.removeLast()
            runTerms.removeLast()
        }
    }

    /// Forgets the entries up to and including `index`, whose term is `term`.
    mutating func compact(upTo index: LogIndex, term: Term, at location: RecordLocation) {
        if index < base { return }
        compactAt = location
        if index == base {
            baseTerm = term
            return
        }
        if index >= lastIndex {
            locations.removeAll(keepingCapacity: false)
            cumulativeBytes.removeAll(keepingCapacity: false)
            runStarts.removeAll()
            runTerms.removeAll()
        } else {
            let drop = Int(index.rawValue - base.rawValue)
            locations.removeFirst(drop)
            cumulativeBytes.removeFirst(drop)
            // Keep the run that covers index + 1, starting it there.
            var firstKept = 0
            while firstKept + 1 < runStarts.count && runStarts[firstKept + 1] <= index.next { firstKept += 1 }
            runStarts.removeFirst(firstKept)
            runTerms.removeFirst(firstKept)
            runStarts[0] = index.next
        }
        base = index
        baseTerm = term
    }

    /// The highest index `j` such that the entries after it hold at most `bytes` of payload
    /// (the last index when the last entry alone is larger; `base` when all fit).
    func startOfSuffix(holdingAtMost bytes: UInt64) -> LogIndex {
        guard let total = cumulativeBytes.last, let first = cumulativeBytes.first, let length = locations.first?.length
        else { return base }
        let origin = first - UInt64(length)
        if total - origin <= bytes { return base }
        // The smallest position p with total - cumulative[p] <= bytes: the entries after
        // position p fit, so compacting through p leaves them.
        var lo = 0
        var hi = cumulativeBytes.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if total - cumulativeBytes[mid] <= bytes { hi = mid } else { lo = mid + 1 }
        }
        return LogIndex(base.rawValue + UInt64(lo) + 1)
    }

    /// The oldest segment holding a record this group still needs, or nil.
    var pinnedSegment: UInt64? {
        var oldest: UInt64? = locations.first?.segment
        for candidate in [hardStateAt?.segment, compactAt?.segment] {
            if let c = candidate, oldest == nil || c < oldest! { oldest = c }
        }
        return oldest
    }
}

import RaftConsensus

/// Segment garbage collection. Runs on the writer thread with no batch in flight and none
/// encoded, so the index is exactly what is durable and nothing can interleave with a
/// rewrite. Segments are only ever deleted oldest first, which is what makes replay of any
/// remaining suffix of segments correct (see docs/WAL.md, "Compaction").
extension SharedLog {
    /// Deletes the segments no group needs; if more than `maxSegments` remain, rewrites one
    /// round of the groups pinning the oldest segment. Returns false when the writer must stop.
    func runCompactionRound() -> Bool {
        compactionPending = false
        compactionOwed = false
        do {
            try deleteUnneededSegments()
            if segments.sequences.count > options.maxSegments {
                if try rewriteGroupsPinningOldestSegment() {
                    try deleteUnneededSegments()
                    // More to do: another round after the next normal batch.
                    compactionOwed = segments.sequences.count > options.maxSegments
                }
            }
        } catch WALError.io(let error) {
            stop(.io(error), failing: [])
            return false
        } catch {
            stop(error, failing: [])
            return false
        }
        if !compactionOwed {
            let waiters = gcWaiters
            gcWaiters.removeAll()
            for waiter in waiters { waiter.completion(.success(())) }
        }
        return true
    }

    private func deleteUnneededSegments() throws(WALError) {
        let oldestNeeded = lock.withLock { table.oldestPinnedSegment } ?? currentSegment
        let deletable = segments.sequences.prefix { $0 < oldestNeeded && $0 != currentSegment }
        guard !deletable.isEmpty else { return }
        try segments.deleteOldest(Array(deletable))
        lock.withLock {
            statisticsStorage.segmentsDeleted += UInt64(deletable.count)
            statisticsStorage.bytesReclaimed += UInt64(deletable.count) * UInt64(segments.segmentSize)
        }
        logger.debug("deleted WAL segments", metadata: ["count": "\(deletable.count)"])
    }

    /// Rewrites the live records of the groups pinning the oldest segment into the current
    /// one (as one batch, written and synced like any other). Returns whether it wrote.
    private func rewriteGroupsPinningOldestSegment() throws(WALError) -> Bool {
        guard let oldest = segments.sequences.first, oldest != currentSegment else { return false }
        // The groups to move, smallest first, within the round's byte budget.
        let candidates: [(GroupID, GroupLog, Int)] = lock.withLock {
            var found: [(GroupID, GroupLog, Int)] = []
            for (group, log) in table.groups where log.pinnedSegment == oldest {
                let bytes = log.locations.reduce(0) { $0 + WALFormat.recordSize(payload: Int($1.length)) } + 128
                found.append((group, log, bytes))
            }
            return found.sorted { ($0.2, $0.0) < ($1.2, $1.0) }
        }
        guard !candidates.isEmpty else { return false }
        // Moving groups forward pays only when what moves is small next to what it frees:
        // at most half a segment of live log to free a whole segment. Above that the log
        // is simply this big (groups not compacted); copying it would only churn the disk.
        let pinnedBytes = candidates.reduce(0) { $0 + $1.2 }
        if pinnedBytes > options.segmentSize / 2 {
            if budgetWarningSegments != segments.sequences.count {
                budgetWarningSegments = segments.sequences.count
                logger.warning(
                    "WAL above its segment budget, but the groups pinning the oldest segment hold too much uncompacted log to move; compact (snapshot) them",
                    metadata: [
                        "segments": "\(segments.sequences.count)", "groups": "\(candidates.count)",
                        "bytes": "\(pinnedBytes)",
                    ])
            }
            return false
        }
        var selected: [(GroupID, GroupLog)] = []
        var budget = 0
        for (group, log, bytes) in candidates {
            if !selected.isEmpty && budget + bytes > options.maxRewriteBytesPerRound { break }
            selected.append((group, log))
            budget += bytes
        }
        if writeOffset + WALFormat.batchHeaderSize + budget > options.segmentSize {
            do {
                try rotate()
            } catch {
                // No room for a new segment (ENOSPC): not fatal, nothing was written; the
                // next rotation tries again.
                logger.error("WAL compaction could not start a new segment: \(error)")
                return false
            }
        }
        let batch = PreparedBatch(
            sequence: nextBatchSequence, segment: currentSegment, offset: writeOffset,
            capacity: WALFormat.batchHeaderSize + budget)
        batch.isRewrite = true
        for (group, log) in selected {
            if let hardState = log.hardState {
                let header = RecordHeader(
                    length: 8, type: .hardState, kind: 0, group: group, term: hardState.term, index: hardState.commit)
                withUnsafeBytes(of: hardState.vote.rawValue.littleEndian) {
                    batch.add(header, payload: $0, vote: hardState.vote)
                }
            }
            if !log.locations.isEmpty {
                let entries = try entries(of: group, from: log.firstIndex, to: log.lastIndex.next, maxBytes: Int.max)
                for entry in entries {
                    let header = RecordHeader(
                        length: entry.payload.count, type: .entry, kind: entry.kind, group: group, term: entry.term,
                        index: entry.index)
                    entry.payload.withUnsafeBytes { batch.add(header, payload: $0, entry: entry) }
                }
            }
            // The compaction record goes last: replay may have reset the group at a gap among
            // older, dead records, and this record must be the one that sets `base` and its term.
            if log.compactAt != nil {
                let header = RecordHeader(
                    length: 0, type: .compact, kind: 0, group: group, term: log.baseTerm, index: log.base)
                batch.add(header, payload: UnsafeRawBufferPointer(start: nil, count: 0))
            }
        }
        guard !batch.records.isEmpty else { return false }
        batch.sealHeader(salt: segments.salts[batch.segment]!)
        nextBatchSequence += 1
        writeOffset += batch.length
        do {
            let file = segments.files[batch.segment]!
            let bytes = UnsafeRawBufferPointer(rebasing: batch.buffer[0..<batch.length])
            let ticket = try device.submit(
                file, [PositionedWrite(offset: UInt64(batch.offset), bytes: bytes)], sync: true)
            try device.wait(for: ticket)
        } catch {
            throw .io(error)
        }
        apply(batch)
        logger.debug(
            "rewrote WAL groups forward", metadata: ["groups": "\(selected.count)", "bytes": "\(batch.length)"])
        return true
    }
}

import Metrics
import RaftConsensus

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The writer thread: take what is queued, encode one batch, submit it linked to an
/// fdatasync, and while it runs take and encode the next. Apply a batch to the index and
/// complete its waiters only once it is durable.
extension SharedLog {
    /// One encoded batch and what to do when it is durable.
    final class PreparedBatch {
        let sequence: UInt64
        let segment: UInt64
        /// Offset of the batch header in the segment.
        let offset: Int
        let buffer: UnsafeMutableRawBufferPointer
        var length = WALFormat.batchHeaderSize
        var records: [EncodedRecord] = []
        var requests: [Request] = []
        var entryCount = 0
        var isRewrite = false
        /// When the batch was prepared: `apply` records prepare-to-durable (the write and
        /// its fdatasync) in `raftd_wal_batch_durable_seconds`.
        let preparedAt = MonotonicClock.system.nanoseconds

        init(sequence: UInt64, segment: UInt64, offset: Int, capacity: Int) {
            self.sequence = sequence
            self.segment = segment
            self.offset = offset
            self.buffer = .allocate(byteCount: max(capacity, WALFormat.batchHeaderSize), alignment: 64)
        }

        deinit { buffer.deallocate() }

        /// Bytes this batch can hold, its header included.
        var capacity: Int { buffer.count }

        /// Drops the records added after the first `records` (an undone unit).
        func truncate(length: Int, records count: Int, entries: Int) {
            self.length = length
            records.removeLast(records.count - count)
            entryCount = entries
        }

        /// Appends one record; returns nothing, the record is remembered for `apply`.
        func add(
            _ header: RecordHeader, payload: UnsafeRawBufferPointer, vote: MemberID = .none, entry: WALEntry? = nil
        ) {
            let size = WALFormat.recordSize(payload: payload.count)
            precondition(length + size <= buffer.count, "batch buffer overflow")
            header.encode(into: buffer.baseAddress! + length, payload: payload)
            records.append(
                EncodedRecord(header: header, offsetInSegment: UInt32(offset + length), vote: vote, entry: entry))
            length += size
            if header.type == .entry { entryCount += 1 }
        }

        func sealHeader(salt: UInt64) {
            BatchHeader(sequence: sequence, bodyLength: length - WALFormat.batchHeaderSize, recordCount: records.count)
                .encode(into: buffer.baseAddress!, salt: salt)
        }
    }

    struct EncodedRecord {
        var header: RecordHeader
        var offsetInSegment: UInt32
        var vote: MemberID
        /// The entry, for the cache (entry records only).
        var entry: WALEntry?
    }

    func runWriter() {
        writerThread.store(UInt(pthread_self()), ordering: .releasing)
        var inFlight: (batch: PreparedBatch, ticket: BatchTicket)?
        // Batches encoded and not yet submitted, in order: one caller's unit may need several.
        var encoded: [PreparedBatch] = []
        var encodedHead = 0
        while true {
            let closing = lock.withLock { isClosing }
            if closing && (compactionPending || compactionOwed) && encodedHead == encoded.count {
                // Closing drops garbage collection (only an optimisation; it runs again
                // after the next segment rotation): otherwise nothing would take the queue's
                // last requests and the loop would never end.
                dropCompaction()
            }
            var next: PreparedBatch?
            if encodedHead < encoded.count {
                next = encoded[encodedHead]
                encodedHead += 1
            } else if !compactionPending {
                encoded = []
                encodedHead = 0
                guard let taken = takeRequests(waitForWork: inFlight == nil) else {
                    // Closing with nothing queued: a round still owed is dropped, and whoever
                    // waits for one hears so.
                    dropCompaction()
                    if inFlight == nil { return }  // closing, all durable
                    break
                }
                encoded = prepare(taken)
                if !encoded.isEmpty {
                    next = encoded[0]
                    encodedHead = 1
                }
            }
            // 1. Wait until the batch in flight is durable.
            var durable: PreparedBatch?
            if let current = inFlight {
                inFlight = nil
                do {
                    try device.wait(for: current.ticket)
                } catch {
                    // Batches already encoded were taken off the queue: their waiters fail too.
                    let rest = encoded[encodedHead...].flatMap(\.requests)
                    stop(.io(error), failing: current.batch.requests + (next?.requests ?? []) + rest)
                    return
                }
                durable = current.batch
            }
            // 2. Submit the next one at once, so the disk never waits for step 3.
            var submitFailure: IOError?
            if let batch = next, !batch.records.isEmpty {
                batch.sealHeader(salt: segments.salts[batch.segment]!)
                do {
                    let bytes = UnsafeRawBufferPointer(rebasing: batch.buffer[0..<batch.length])
                    let file = segments.files[batch.segment]!
                    let ticket = try device.submit(
                        file, [PositionedWrite(offset: UInt64(batch.offset), bytes: bytes)], sync: true)
                    inFlight = (batch, ticket)
                } catch {
                    submitFailure = error
                }
            }
            // 3. Publish the durable batch (index, cache, waiters) while the next one is written.
            if let durable { finish(durable) }
            if let submitFailure, let batch = next {
                stop(.io(submitFailure), failing: batch.requests + encoded[encodedHead...].flatMap(\.requests))
                return
            }
            if let batch = next, batch.records.isEmpty {
                // Nothing to write (only no-ops or refused requests): done already.
                for request in batch.requests { request.completion(.success(())) }
            }
            // 4. Garbage collection runs with nothing in flight and nothing encoded. A round
            // that left work owes another, which waits for one normal batch (or an idle
            // queue), so that writes are never stalled behind a long clean-up.
            if let batch = next, !batch.records.isEmpty, compactionOwed {
                compactionOwed = false
                compactionPending = true
            }
            if (compactionPending || compactionOwed) && next == nil && inFlight == nil && !closing {
                guard runCompactionRound() else { return }
            }
        }
        // Closing with a batch still in flight.
        if let current = inFlight {
            do {
                try device.wait(for: current.ticket)
                finish(current.batch)
            } catch {
                stop(.io(error), failing: current.batch.requests)
            }
        }
    }

    /// Forgets pending and owed garbage collection (closing); `collectGarbage()` callers
    /// waiting for a round are answered `.closed`.
    private func dropCompaction() {
        compactionPending = false
        compactionOwed = false
        let waiters = gcWaiters
        gcWaiters = []
        for waiter in waiters { waiter.completion(.failure(.closed)) }
    }

    /// Takes queued requests up to the batch bounds; nil when closing with nothing queued.
    private func takeRequests(waitForWork: Bool) -> [Request]? {
        lock.withLock {
            while waitForWork && queueHead == queue.count && !isClosing && !compactionPending && !compactionOwed {
                lock.wait()
            }
            if queueHead == queue.count {
                // Closing: owed compaction is dropped (it is only an optimisation).
                return isClosing && waitForWork ? nil : []
            }
            if options.maxBatchDelayMicroseconds > 0 && waitForWork {
                // An idle disk: give concurrent writers a moment to join this batch (every
                // enqueue wakes us, so wait again until the deadline or enough bytes).
                let deadline = MonotonicClock.system.nanoseconds + options.maxBatchDelayMicroseconds * 1000
                while queuedBytes < options.maxBatchBytes / 2 && !isClosing {
                    let remaining = deadline - MonotonicClock.system.nanoseconds
                    if remaining <= 0 { break }
                    _ = lock.wait(nanoseconds: remaining)
                }
            }
            var taken: [Request] = []
            var bytes = 0
            while queueHead < queue.count && taken.count < options.maxBatchWrites {
                let request = queue[queueHead]
                if !taken.isEmpty && bytes + request.size > options.maxBatchBytes { break }
                taken.append(request)
                bytes += request.size
                queueHead += 1
            }
            queuedBytes -= bytes
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            } else if queueHead > 1024 {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            return taken
        }
    }

    /// Batches being filled by `prepare`. The open batch takes records until the next one
    /// does not fit (`maxBatchBytes`, or what is left of its segment); then it is sealed and
    /// a new batch starts, in a new segment when this one is full. One caller's unit may
    /// thus span several batches: they are submitted in order, each durable before the next
    /// is written, so a crash leaves a prefix of the unit.
    struct Packing {
        var batches: [PreparedBatch] = []
        var open: PreparedBatch?
        /// Upper bound of the record bytes still to encode (sizes the next buffer).
        var remainingBound: Int
    }

    /// Where `prepare` was before a unit, to undo that unit alone.
    private struct PackingMark {
        var batchCount: Int
        var open: PreparedBatch?
        var openLength: Int
        var openRecords: Int
        var openEntries: Int
        var sequence: UInt64
        var segment: UInt64
        var offset: Int
        var shadow: [GroupID: ShadowState?]
    }

    /// Encodes `requests` into batches, refusing the invalid ones at once. A unit of writes
    /// is validated whole, then encoded whole (over as many batches as it needs) or, when
    /// no new segment can be started, refused whole with nothing of it kept.
    private func prepare(_ requests: [Request]) -> [PreparedBatch] {
        guard !requests.isEmpty else { return [] }
        var packing = Packing(remainingBound: requests.reduce(0) { $0 + $1.size })
        var noRecords: [Request] = []
        for request in requests {
            defer { packing.remainingBound -= request.size }
            switch request.operation {
            case .writes(let writes):
                if let refusal = validate(writes) {
                    request.completion(.failure(refusal))
                    continue
                }
                let mark = self.mark(packing, groups: writes.map(\.group))
                do {
                    for write in writes { try encode(write, into: &packing) }
                } catch {
                    undo(&packing, to: mark)
                    request.completion(.failure(error))
                    continue
                }
                attach(request, to: packing, orLater: &noRecords)
            case .compact(let group, let index, let term):
                let state = shadow[group] ?? ShadowState(base: .zero, last: .zero, lastTerm: .zero)
                if index > state.base {
                    let header = RecordHeader(
                        length: 0, type: .compact, kind: 0, group: group, term: term, index: index)
                    if let error = addEmptyRecord(header, into: &packing) {
                        request.completion(.failure(error))
                        continue
                    }
                    shadow[group] = ShadowState(
                        base: index, last: max(index, state.last), lastTerm: index >= state.last ? term : state.lastTerm
                    )
                }
                attach(request, to: packing, orLater: &noRecords)
            case .remove(let group):
                let header = RecordHeader(
                    length: 0, type: .removeGroup, kind: 0, group: group, term: .zero, index: .zero)
                if let error = addEmptyRecord(header, into: &packing) {
                    request.completion(.failure(error))
                    continue
                }
                shadow[group] = nil
                attach(request, to: packing, orLater: &noRecords)
            case .collectGarbage:
                compactionPending = true
                gcWaiters.append(request)
            }
        }
        if let open = packing.open { seal(open, in: &packing) }
        if !noRecords.isEmpty {
            // Requests that wrote nothing: answered with the last batch, or at once.
            if let last = packing.batches.last {
                last.requests.append(contentsOf: noRecords)
            } else {
                packing.batches.append(
                    PreparedBatch(sequence: 0, segment: currentSegment, offset: writeOffset, capacity: 0))
                packing.batches[0].requests = noRecords
            }
        }
        return packing.batches
    }

    /// Adds a record without payload (compaction, group removal); the error if no batch
    /// could take it.
    private func addEmptyRecord(_ header: RecordHeader, into packing: inout Packing) -> WALError? {
        do {
            try room(for: WALFormat.recordSize(payload: 0), in: &packing)
                .add(header, payload: UnsafeRawBufferPointer(start: nil, count: 0))
            return nil
        } catch {
            return error
        }
    }

    /// A request is answered when the batch holding its last record is durable (or, when
    /// it wrote nothing and nothing precedes it, at once).
    private func attach(_ request: Request, to packing: Packing, orLater noRecords: inout [Request]) {
        if let open = packing.open {
            open.requests.append(request)
        } else if let last = packing.batches.last {
            last.requests.append(request)
        } else {
            noRecords.append(request)
        }
    }

    /// The open batch if a record of `size` bytes fits it; else a new batch (in a new
    /// segment when this one is full). Throws `.segmentUnavailable` when a new segment
    /// cannot be started (typically ENOSPC preallocating it).
    private func room(for size: Int, in packing: inout Packing) throws(WALError) -> PreparedBatch {
        if let open = packing.open {
            if open.length + size <= open.capacity { return open }
            seal(open, in: &packing)
        }
        if writeOffset + WALFormat.batchHeaderSize + size > options.segmentSize {
            do {
                try rotate()
            } catch {
                // Logged once per run of failures (the caller retries every tick).
                if !segmentFailureLogged {
                    segmentFailureLogged = true
                    logger.error("cannot start a new WAL segment: \(error); writes wait until space is freed")
                }
                if case .io(let io) = error { throw .segmentUnavailable(io) }
                throw error
            }
        }
        // Within the batch limit and the segment; the buffer no larger than what is left to
        // encode (an upper bound: sizes count a possible truncation record per write).
        let body = min(
            options.maxBatchBytes, options.segmentSize - writeOffset - WALFormat.batchHeaderSize,
            max(size, packing.remainingBound))
        let batch = PreparedBatch(
            sequence: nextBatchSequence, segment: currentSegment, offset: writeOffset,
            capacity: WALFormat.batchHeaderSize + body)
        nextBatchSequence += 1
        packing.open = batch
        return batch
    }

    /// Closes the open batch: the next one starts after it.
    private func seal(_ batch: PreparedBatch, in packing: inout Packing) {
        precondition(packing.open === batch)
        writeOffset = batch.offset + WALFormat.aligned(batch.length)
        packing.batches.append(batch)
        packing.open = nil
    }

    private func mark(_ packing: Packing, groups: [GroupID]) -> PackingMark {
        var saved: [GroupID: ShadowState?] = [:]
        for group in groups where saved[group] == nil { saved[group] = .some(shadow[group]) }
        return PackingMark(
            batchCount: packing.batches.count, open: packing.open, openLength: packing.open?.length ?? 0,
            openRecords: packing.open?.records.count ?? 0, openEntries: packing.open?.entryCount ?? 0,
            sequence: nextBatchSequence, segment: currentSegment, offset: writeOffset, shadow: saved)
    }

    /// Forgets everything encoded since `mark` (a unit that could not be placed whole).
    private func undo(_ packing: inout Packing, to mark: PackingMark) {
        for (group, state) in mark.shadow { shadow[group] = state }
        packing.batches.removeLast(packing.batches.count - mark.batchCount)
        nextBatchSequence = mark.sequence
        if let open = mark.open {
            open.truncate(length: mark.openLength, records: mark.openRecords, entries: mark.openEntries)
            packing.open = open
            if currentSegment != mark.segment {
                // Segments were started for the undone records: the open batch stays in its
                // segment, closed; the next batch starts in the new one.
                packing.batches.append(open)
                packing.open = nil
                writeOffset = WALFormat.segmentHeaderSize
            } else {
                writeOffset = mark.offset
            }
        } else {
            packing.open = nil
            writeOffset = currentSegment == mark.segment ? mark.offset : WALFormat.segmentHeaderSize
        }
    }

    /// Why `writes` cannot be written, checked against everything encoded so far.
    private func validate(_ writes: [GroupWrite]) -> WALError? {
        var projected: [GroupID: ShadowState] = [:]
        for write in writes {
            guard write.group != .invalid else {
                return .invalidWrite(group: write.group, reason: "group 0 is invalid")
            }
            var state =
                projected[write.group] ?? shadow[write.group] ?? ShadowState(base: .zero, last: .zero, lastTerm: .zero)
            var wasReset = false
            if let reset = write.reset {
                guard reset.index >= state.base else {
                    return .invalidWrite(
                        group: write.group,
                        reason: "a reset to \(reset.index) is below the compacted index \(state.base)")
                }
                state = ShadowState(base: reset.index, last: reset.index, lastTerm: reset.term)
                projected[write.group] = state
                wasReset = true
            }
            guard let first = write.entries.first else { continue }
            if first.index <= state.base {
                return .invalidWrite(
                    group: write.group, reason: "index \(first.index) is at or below the compacted index \(state.base)")
            }
            if first.index > state.last.next {
                return .invalidWrite(
                    group: write.group, reason: "index \(first.index) leaves a gap after \(state.last)")
            }
            if first.index == state.last.next && first.term < state.lastTerm {
                return .invalidWrite(
                    group: write.group, reason: "term \(first.term) below the last term \(state.lastTerm)")
            }
            if first.index <= state.last, !wasReset,
                lock.withLock({ table.groups[write.group]?.term(at: first.index) }) == first.term
            {
                // An overwrite starts with a truncation, and a crash may leave the truncation
                // without the rest (docs/WAL.md, "The prefix of an overwrite"): rewriting a
                // durable entry of the same term could then lose entries that were committed.
                return .invalidWrite(
                    group: write.group,
                    reason:
                        "overwrite at \(first.index) rewrites a durable entry of the same term \(first.term); a write must start at the first conflicting entry"
                )
            }
            var previous = first
            for entry in write.entries.dropFirst() {
                if entry.index != previous.index.next || entry.term < previous.term {
                    return .invalidWrite(
                        group: write.group, reason: "entries must have consecutive indexes and non-decreasing terms")
                }
                previous = entry
            }
            for entry in write.entries where entry.payload.count > WALFormat.maxPayloadSize {
                return .tooLarge(bytes: entry.payload.count, limit: WALFormat.maxPayloadSize)
            }
            state.last = previous.index
            state.lastTerm = previous.term
            projected[write.group] = state
        }
        return nil
    }

    private func encode(_ write: GroupWrite, into packing: inout Packing) throws(WALError) {
        var state = shadow[write.group] ?? ShadowState(base: .zero, last: .zero, lastTerm: .zero)
        if let reset = write.reset {
            // Everything after the snapshot goes, then everything up to it: replay drops the
            // whole log, whatever it held, and restarts it at the snapshot.
            if state.last > reset.index {
                let header = RecordHeader(
                    length: 0, type: .truncate, kind: 0, group: write.group, term: reset.term, index: reset.index.next)
                try room(for: WALFormat.recordSize(payload: 0), in: &packing)
                    .add(header, payload: UnsafeRawBufferPointer(start: nil, count: 0))
            }
            let header = RecordHeader(
                length: 0, type: .compact, kind: 0, group: write.group, term: reset.term, index: reset.index)
            try room(for: WALFormat.recordSize(payload: 0), in: &packing)
                .add(header, payload: UnsafeRawBufferPointer(start: nil, count: 0))
            state = ShadowState(base: reset.index, last: reset.index, lastTerm: reset.term)
        }
        if let first = write.entries.first {
            if first.index <= state.last {
                let header = RecordHeader(
                    length: 0, type: .truncate, kind: 0, group: write.group, term: first.term, index: first.index)
                try room(for: WALFormat.recordSize(payload: 0), in: &packing)
                    .add(header, payload: UnsafeRawBufferPointer(start: nil, count: 0))
            }
            for entry in write.entries {
                let header = RecordHeader(
                    length: entry.payload.count, type: .entry, kind: entry.kind, group: write.group, term: entry.term,
                    index: entry.index)
                let batch = try room(for: WALFormat.recordSize(payload: entry.payload.count), in: &packing)
                entry.payload.withUnsafeBytes { batch.add(header, payload: $0, entry: entry) }
            }
            state.last = write.entries.last!.index
            state.lastTerm = write.entries.last!.term
        }
        if let hardState = write.hardState {
            // After the entries: a commit never names an entry that is not durable before it.
            let header = RecordHeader(
                length: 8, type: .hardState, kind: 0, group: write.group, term: hardState.term, index: hardState.commit)
            let batch = try room(for: WALFormat.recordSize(payload: 8), in: &packing)
            withUnsafeBytes(of: hardState.vote.rawValue.littleEndian) {
                batch.add(header, payload: $0, vote: hardState.vote)
            }
        }
        shadow[write.group] = state
    }

    /// Publishes a durable batch: index and cache first, then its waiters.
    private func finish(_ batch: PreparedBatch) {
        apply(batch)
        for request in batch.requests { request.completion(.success(())) }
    }

    /// Prepare-to-durable latency of WAL batches (swift-metrics: a no-op until the process
    /// bootstraps a metrics backend, as `raftd serve` does with Prometheus).
    static let durableLatency = Metrics.Timer(label: "raftd_wal_batch_durable_seconds", preferredDisplayUnit: .seconds)

    /// Applies a durable batch to the index, the cache and the counters.
    func apply(_ batch: PreparedBatch) {
        lock.withLock {
            for record in batch.records {
                let location = RecordLocation(segment: batch.segment, offset: record.offsetInSegment)
                table.apply(record.header, at: location, vote: record.vote, replaying: false)
                // A rewrite copies entries the cache already has (or that are cold): leave the
                // cache to the hot ones.
                if batch.isRewrite { continue }
                let group = record.header.group
                switch record.header.type {
                case .entry: cache.add(group, record.entry!)
                case .truncate: cache.drop(group, from: record.header.index)
                case .compact: cache.dropThrough(group, record.header.index)
                case .removeGroup: cache.drop(group, from: .zero)
                case .hardState: break
                }
            }
            Self.durableLatency.recordNanoseconds(Int64(MonotonicClock.system.nanoseconds - batch.preparedAt))
            statisticsStorage.batches += 1
            statisticsStorage.fdatasyncs += 1
            statisticsStorage.records += UInt64(batch.records.count)
            statisticsStorage.entries += UInt64(batch.entryCount)
            if batch.isRewrite {
                statisticsStorage.bytesRewritten += UInt64(batch.length)
            } else {
                statisticsStorage.bytesWritten += UInt64(batch.length)
            }
        }
    }

    /// Starts the next segment; the caller has nothing encoded for the current one that is
    /// not already reserved.
    func rotate() throws(WALError) {
        let next = currentSegment + 1
        _ = try segments.create(next)
        currentSegment = next
        writeOffset = WALFormat.segmentHeaderSize
        compactionPending = true
        segmentFailureLogged = false
        lock.withLock { statisticsStorage.segmentsCreated += 1 }
    }

    /// The writer stops for good: the failed batch, everything queued and every later
    /// request fail with `.stopped`, and `onFatal` runs once.
    func stop(_ cause: WALError, failing requests: [Request]) {
        logger.critical("WAL writer stopped: \(cause)")
        let queued: [Request] = lock.withLock {
            stoppedBy = cause
            let rest = Array(queue[queueHead...])
            queue.removeAll()
            queueHead = 0
            queuedBytes = 0
            return rest
        }
        // First the fatal handler (by default the process ends here, before any waiter hears
        // an answer that recovery might contradict), then the waiters.
        options.onFatal(cause)
        let stopped = WALError.stopped(cause: "\(cause)")
        for request in requests + queued + gcWaiters { request.completion(.failure(stopped)) }
        gcWaiters.removeAll()
    }
}

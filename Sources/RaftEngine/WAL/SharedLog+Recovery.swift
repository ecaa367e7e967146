import RaftConsensus

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What recovery found when the log was opened.
public struct RecoveryReport: Sendable, Equatable {
    public var segments = 0
    public var batches = 0
    public var records = 0
    public var bytesScanned = 0
    /// Where a torn tail was cut off, if one was: segment file, offset, bytes zeroed.
    public var tornTail: (file: String, offset: Int, bytes: Int)?
    public var seconds = 0.0

    public static func == (a: RecoveryReport, b: RecoveryReport) -> Bool {
        a.segments == b.segments && a.batches == b.batches && a.records == b.records && a.bytesScanned == b.bytesScanned
            && a.tornTail?.file == b.tornTail?.file && a.tornTail?.offset == b.tornTail?.offset
    }
}

/// Scans WAL segments. Shared by recovery and by `raftd wal verify` / `wal dump`.
struct SegmentScanner {
    /// One valid batch found by a scan.
    struct Batch {
        var header: BatchHeader
        var offset: Int
        var records: [(header: RecordHeader, offset: Int)]
    }

    enum Outcome {
        /// Valid batches end at `end`; the rest of the segment is zero.
        case clean(end: Int)
        /// Valid batches end at `end`; what follows is not a valid batch (`reason`), and
        /// non-zero bytes run up to `dirtyEnd`.
        case damaged(end: Int, reason: String, dirtyEnd: Int)
        /// A complete, valid batch at `offset` out of sequence: batches were lost or
        /// reordered, which no crash explains.
        case outOfSequence(offset: Int, found: UInt64, expected: UInt64)
    }

    /// Scans `bytes` (a whole segment) from just after its header, calling `visit` for each
    /// valid batch in order. `expected` is the next batch sequence (nil: any).
    static func scan(
        _ bytes: UnsafeRawBufferPointer,
        salt: UInt64,
        expected: inout UInt64?,
        visit: (Batch, UnsafeRawBufferPointer) -> Void
    ) -> Outcome {
        var offset = WALFormat.segmentHeaderSize
        var records: [(header: RecordHeader, offset: Int)] = []
        while offset + WALFormat.batchHeaderSize <= bytes.count {
            let at = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            if BatchHeader.isZero(at) {
                let dirty = lastNonZero(bytes, from: offset)
                return dirty == offset
                    ? .clean(end: offset)
                    : .damaged(end: offset, reason: "non-zero bytes after the last batch", dirtyEnd: dirty)
            }
            func damaged(_ reason: String) -> Outcome {
                .damaged(end: offset, reason: reason, dirtyEnd: lastNonZero(bytes, from: offset))
            }
            guard let header = BatchHeader.decode(at, salt: salt) else {
                return damaged("batch header checksum mismatch")
            }
            let outOfSequence = expected.map { header.sequence != $0 } ?? false
            let end = offset + WALFormat.batchHeaderSize + header.bodyLength
            guard header.bodyLength % WALFormat.alignment == 0, end <= bytes.count, header.recordCount > 0 else {
                return damaged("batch length \(header.bodyLength) does not fit the segment")
            }
            records.removeAll(keepingCapacity: true)
            var position = offset + WALFormat.batchHeaderSize
            for k in 0..<header.recordCount {
                guard position < end,
                    let record = RecordHeader.decode(UnsafeRawBufferPointer(rebasing: bytes[position..<end]))
                else {
                    return damaged("record \(k) of batch \(header.sequence) at offset \(position) fails its checksum")
                }
                records.append((record, position))
                position += WALFormat.recordSize(payload: record.length)
            }
            guard position == end else { return damaged("batch \(header.sequence): records do not fill the batch") }
            if outOfSequence { return .outOfSequence(offset: offset, found: header.sequence, expected: expected!) }
            visit(Batch(header: header, offset: offset, records: records), bytes)
            expected = header.sequence + 1
            offset = end
        }
        return .clean(end: offset)
    }

    /// Applies a verified batch's records to `table` (as replay: see `GroupLog.appendEntry`).
    static func replay(_ batch: Batch, _ bytes: UnsafeRawBufferPointer, segment: UInt64, into table: inout LogTable) {
        for (header, offset) in batch.records {
            var vote = MemberID.none
            if header.type == .hardState && header.length == 8 {
                vote = MemberID(
                    UInt64(
                        littleEndian: bytes.loadUnaligned(
                            fromByteOffset: offset + WALFormat.recordHeaderSize, as: UInt64.self)))
            }
            table.apply(
                header, at: RecordLocation(segment: segment, offset: UInt32(offset)), vote: vote, replaying: true)
        }
    }

    /// The first valid batch header after `offset` with a sequence above `sequence`, if any:
    /// proof that damage is not a torn tail.
    static func laterBatch(
        in bytes: UnsafeRawBufferPointer, after offset: Int, salt: UInt64, above sequence: UInt64?
    ) -> Int? {
        var position = WALFormat.aligned(offset + 1)
        while position + WALFormat.batchHeaderSize <= bytes.count {
            if let header = BatchHeader.decode(UnsafeRawBufferPointer(rebasing: bytes[position...]), salt: salt),
                sequence.map({ header.sequence > $0 }) ?? true
            {
                return position
            }
            position += WALFormat.alignment
        }
        return nil
    }

    /// The end of the last non-zero 8-byte word at or after `offset` (== offset when all zero).
    static func lastNonZero(_ bytes: UnsafeRawBufferPointer, from offset: Int) -> Int {
        var end = bytes.count & ~(WALFormat.alignment - 1)
        while end > offset {
            if bytes.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) != 0 { return end }
            end -= 8
        }
        return offset
    }

    /// Reads a whole segment file into `buffer` (grown as needed); returns the byte count.
    static func read(_ file: DiskFile, into buffer: inout UnsafeMutableRawBufferPointer) throws(WALError) -> Int {
        do {
            let size = Int(try file.size())
            if buffer.count < size {
                buffer.deallocate()
                buffer = .allocate(byteCount: size, alignment: 4096)
            }
            let n = try file.readFully(
                fromAbsoluteOffset: 0, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]))
            guard n == size else {
                throw WALError.corrupt(file: file.path, offset: UInt64(n), reason: "segment shorter than its size")
            }
            return size
        } catch let error as IOError {
            throw .io(error)
        } catch let error as WALError {
            throw error
        } catch {
            preconditionFailure("\(error)")
        }
    }

    /// Checks a segment's header against the sequence in its name; returns the header.
    static func checkHeader(
        _ bytes: UnsafeRawBufferPointer, sequence: UInt64, path: String
    ) throws(WALError)
        -> SegmentHeader
    {
        switch SegmentHeader.decode(bytes) {
        case .success(let header):
            guard header.sequence == sequence else {
                throw .corrupt(file: path, offset: 16, reason: "header names segment \(header.sequence)")
            }
            return header
        case .failure(.notAWALSegment):
            throw .foreignFile(file: path, reason: "no WAL segment magic")
        case .failure(.unsupportedVersion(let version)):
            throw .foreignFile(
                file: path, reason: "WAL format version \(version); this raftd reads version \(WALFormat.version)")
        case .failure(.damaged):
            throw .corrupt(file: path, offset: 0, reason: "segment header checksum mismatch")
        }
    }
}

/// The one walk over a WAL's segments that recovery and `raftd wal verify` share, so that
/// verify says exactly what recovery would do.
struct SegmentWalk {
    struct Torn {
        var sequence: UInt64
        var path: String
        var end: Int
        var dirtyEnd: Int
        var reason: String
    }

    var table = LogTable()
    var lastGood: UInt64?
    var report = RecoveryReport()
    var salts: [UInt64: UInt64] = [:]
    /// The last batch, torn by a crash: recovery cuts it off.
    var torn: Torn?
    /// Where the next batch goes: segment and offset.
    var writeSegment: UInt64 = 0
    var writeOffset = WALFormat.segmentHeaderSize

    /// Walks `sequences` (ascending; `file(seq)` opens or returns each), replaying every valid
    /// batch into `table` and calling `visit` for it. Throws `.corrupt` / `.foreignFile` for
    /// damage a crash cannot explain.
    static func run(
        sequences: [UInt64],
        path: (UInt64) -> String,
        file: (UInt64) throws(WALError) -> DiskFile,
        bufferSize: Int,
        visit: (SegmentScanner.Batch, UnsafeRawBufferPointer, UInt64) -> Void = { _, _, _ in }
    ) throws(WALError) -> SegmentWalk {
        var walk = SegmentWalk()
        // Segments are deleted oldest first and created one after another: a hole means a
        // segment was lost.
        for (previous, next) in zip(sequences, sequences.dropFirst()) where next != previous + 1 {
            throw .corrupt(
                file: path(previous + 1), offset: 0,
                reason: "segment missing between \(WALFormat.segmentName(previous)) and \(WALFormat.segmentName(next))")
        }
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        var expected: UInt64?
        for (position, sequence) in sequences.enumerated() {
            let segment = try file(sequence)
            // Disk reads of the next segment overlap parsing this one.
            if position + 1 < sequences.count {
                try file(sequences[position + 1]).prefetch(offset: 0, length: UInt64(bufferSize))
            }
            let size = try SegmentScanner.read(segment, into: &buffer)
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<size])
            let header = try SegmentScanner.checkHeader(bytes, sequence: sequence, path: segment.path)
            walk.salts[sequence] = header.salt
            walk.report.segments += 1
            walk.report.bytesScanned += size
            walk.writeSegment = sequence
            if let torn = walk.torn {
                // Only a segment with no batches may follow a torn batch (the writer rotates
                // while the previous batch's fdatasync runs, but writes nothing new until it ends).
                if SegmentScanner.laterBatch(
                    in: bytes, after: WALFormat.segmentHeaderSize - 1, salt: header.salt, above: walk.lastGood) != nil
                {
                    throw .corrupt(file: torn.path, offset: UInt64(torn.end), reason: torn.reason)
                }
                walk.writeOffset = WALFormat.segmentHeaderSize
                continue
            }
            let outcome = SegmentScanner.scan(bytes, salt: header.salt, expected: &expected) { batch, bytes in
                walk.report.batches += 1
                walk.report.records += batch.records.count
                walk.lastGood = batch.header.sequence
                SegmentScanner.replay(batch, bytes, segment: sequence, into: &walk.table)
                visit(batch, bytes, sequence)
            }
            switch outcome {
            case .clean(let end):
                walk.writeOffset = end
            case .outOfSequence(let offset, let found, let wanted):
                throw .corrupt(
                    file: segment.path, offset: UInt64(offset),
                    reason: "batch \(found) where \(wanted) was expected (lost batches)")
            case .damaged(let end, let reason, let dirtyEnd):
                if let later = SegmentScanner.laterBatch(in: bytes, after: end, salt: header.salt, above: walk.lastGood)
                {
                    throw .corrupt(
                        file: segment.path, offset: UInt64(end),
                        reason: "\(reason); a valid batch follows at offset \(later)")
                }
                walk.torn = Torn(sequence: sequence, path: segment.path, end: end, dirtyEnd: dirtyEnd, reason: reason)
                walk.writeOffset = end
            }
        }
        return walk
    }
}

extension SharedLog {
    /// Rebuilds the index from the segments and positions the writer after the last valid
    /// batch. See docs/WAL.md, "Recovery".
    func recover() throws(WALError) {
        let start = MonotonicClock.system.nanoseconds
        try segments.openExisting()
        defer { recoveryReport.seconds = Double(MonotonicClock.system.nanoseconds - start) / 1e9 }
        guard !segments.sequences.isEmpty else {
            _ = try segments.create(1)
            currentSegment = 1
            writeOffset = WALFormat.segmentHeaderSize
            return
        }
        let walk = try SegmentWalk.run(
            sequences: segments.sequences, path: segments.path,
            file: { sequence throws(WALError) in segments.files[sequence]! }, bufferSize: options.segmentSize)
        table = walk.table
        recoveryReport = walk.report
        for (sequence, salt) in walk.salts { segments.setSalt(salt, for: sequence) }
        currentSegment = walk.writeSegment
        writeOffset = walk.writeOffset
        if let torn = walk.torn {
            // The torn tail of the last batch, which was never acknowledged: cut it off, so
            // that nothing after it can ever be read back.
            let file = segments.files[torn.sequence]!
            let length = torn.dirtyEnd - torn.end
            let zeros = [UInt8](repeating: 0, count: length)
            do {
                try zeros.withUnsafeBytes { z in
                    Result { () throws(IOError) in try file.write(toAbsoluteOffset: UInt64(torn.end), z) }
                }.get()
                try file.syncData()
            } catch {
                throw .io(error)
            }
            recoveryReport.tornTail = (file.path, torn.end, length)
            logger.warning(
                "WAL recovery cut off a torn tail (a batch that was never acknowledged)",
                metadata: [
                    "file": "\(file.path)", "offset": "\(torn.end)", "bytes": "\(length)", "reason": "\(torn.reason)",
                ])
        }
        nextBatchSequence = (walk.lastGood ?? 0) + 1
        for (group, log) in table.groups {
            shadow[group] = ShadowState(
                base: log.base, last: log.lastIndex, lastTerm: log.term(at: log.lastIndex) ?? .zero)
        }
    }
}

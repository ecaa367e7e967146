import RaftConsensus

/// Read-only inspection of a WAL directory, for `raftd wal verify` and `raftd wal dump`.
/// Never writes: a torn tail is reported (recovery would cut it off), not repaired.
public struct WALInspector {
    /// One record, as `wal dump` prints it.
    public struct Record: Sendable {
        public var segment: String
        public var offset: Int
        public var batch: UInt64
        public var type: WALRecordType
        public var group: GroupID
        public var term: Term
        public var index: LogIndex
        public var kind: UInt8
        public var length: Int
    }

    /// What `wal verify` found.
    public struct Summary: Sendable {
        public var segments = 0
        public var batches = 0
        public var records = 0
        public var recordsByType: [WALRecordType: Int] = [:]
        public var bytes = 0
        public var groups = 0
        public var entries = 0
        /// A torn last batch that recovery would cut off: file, offset, reason.
        public var tornTail: (file: String, offset: Int, reason: String)?
        /// Damage recovery would refuse: the storage must not be served.
        public var corruption: WALError?

        public var isHealthy: Bool { corruption == nil }
    }

    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// Scans every segment, calling `visit` for each record of each valid batch, in order.
    public func scan(_ visit: (Record) -> Void = { _ in }) throws(WALError) -> Summary {
        var summary = Summary()
        let names: [String]
        do { names = try FileSystem.list(directory) } catch { throw .io(error) }
        var sequences: [(UInt64, String)] = []
        for name in names {
            guard let sequence = WALFormat.segmentSequence(fromName: name) else {
                if !name.hasSuffix(".wal.tmp") {
                    summary.corruption = .foreignFile(file: "\(directory)/\(name)", reason: "not a WAL segment name")
                }
                continue
            }
            sequences.append((sequence, name))
        }
        var table = LogTable()
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var expected: UInt64?
        var lastGood: UInt64?
        var damagedAt: (String, Int, String)?
        for (sequence, name) in sequences {
            let path = "\(directory)/\(name)"
            let file: DiskFile
            do { file = try DiskFile.open(path, .readOnly) } catch { throw .io(error) }
            let size = try SegmentScanner.read(file, into: &buffer)
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<size])
            do {
                try SegmentScanner.checkHeader(bytes, sequence: sequence, path: path)
            } catch {
                summary.corruption = error
                return summary
            }
            summary.segments += 1
            summary.bytes += size
            if let (file, offset, reason) = damagedAt {
                if SegmentScanner.laterBatch(in: bytes, after: WALFormat.segmentHeaderSize - 1, above: lastGood) != nil
                {
                    summary.corruption = .corrupt(file: file, offset: UInt64(offset), reason: reason)
                    return summary
                }
                continue
            }
            let outcome = SegmentScanner.scan(bytes, expected: &expected) { batch, bytes in
                summary.batches += 1
                lastGood = batch.header.sequence
                SegmentScanner.replay(batch, bytes, segment: sequence, into: &table)
                for (header, offset) in batch.records {
                    summary.records += 1
                    summary.recordsByType[header.type, default: 0] += 1
                    visit(
                        Record(
                            segment: name, offset: offset, batch: batch.header.sequence, type: header.type,
                            group: header.group, term: header.term, index: header.index, kind: header.kind,
                            length: header.length))
                }
            }
            if case .damaged(let end, let reason, _) = outcome {
                if let later = SegmentScanner.laterBatch(in: bytes, after: end, above: lastGood) {
                    summary.corruption = .corrupt(
                        file: path, offset: UInt64(end), reason: "\(reason); a valid batch follows at offset \(later)")
                    return summary
                }
                damagedAt = (path, end, reason)
            }
        }
        if let (file, offset, reason) = damagedAt { summary.tornTail = (file, offset, reason) }
        summary.groups = table.groups.count
        summary.entries = table.groups.values.reduce(0) { $0 + $1.locations.count }
        return summary
    }
}

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
    /// Damage is reported in the summary (not thrown); I/O failures are thrown.
    public func scan(_ visit: (Record) -> Void = { _ in }) throws(WALError) -> Summary {
        var summary = Summary()
        let names: [String]
        do { names = try FileSystem.list(directory) } catch { throw .io(error) }
        var sequences: [UInt64] = []
        for name in names {
            if let sequence = WALFormat.segmentSequence(fromName: name) {
                sequences.append(sequence)
            } else if !name.hasSuffix(".wal.tmp") {
                summary.corruption = .foreignFile(file: "\(directory)/\(name)", reason: "not a WAL segment name")
                return summary
            }
        }
        sequences.sort()
        var open: [UInt64: DiskFile] = [:]
        let path = { (sequence: UInt64) in "\(directory)/\(WALFormat.segmentName(sequence))" }
        func file(_ sequence: UInt64) throws(WALError) -> DiskFile {
            if let file = open[sequence] { return file }
            do {
                let file = try DiskFile.open(path(sequence), .readOnly)
                open[sequence] = file
                return file
            } catch {
                throw .io(error)
            }
        }
        let outcome: Result<SegmentWalk, WALError> = Result { () throws(WALError) in
            try SegmentWalk.run(
                sequences: sequences, path: path,
                file: file,
                bufferSize: 1 << 20
            ) { batch, _, sequence in
                for (header, offset) in batch.records {
                    summary.recordsByType[header.type, default: 0] += 1
                    visit(
                        Record(
                            segment: WALFormat.segmentName(sequence), offset: offset, batch: batch.header.sequence,
                            type: header.type, group: header.group, term: header.term, index: header.index,
                            kind: header.kind, length: header.length))
                }
            }
        }
        switch outcome {
        case .success(let walk):
            summary.segments = walk.report.segments
            summary.batches = walk.report.batches
            summary.records = walk.report.records
            summary.bytes = walk.report.bytesScanned
            summary.groups = walk.table.groups.count
            summary.entries = walk.table.groups.values.reduce(0) { $0 + $1.locations.count }
            if let torn = walk.torn { summary.tornTail = (torn.path, torn.end, torn.reason) }
        case .failure(.io(let error)):
            throw .io(error)
        case .failure(let error):
            summary.corruption = error
        }
        return summary
    }
}

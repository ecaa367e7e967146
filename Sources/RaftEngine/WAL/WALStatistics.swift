import RaftConsensus

/// Counters a storage's WAL keeps, for metrics and benchmarks.
public struct WALStatistics: Sendable, Equatable {
    public var batches: UInt64 = 0
    public var fdatasyncs: UInt64 = 0
    public var records: UInt64 = 0
    public var entries: UInt64 = 0
    /// Bytes written for callers' records (headers and padding included).
    public var bytesWritten: UInt64 = 0
    /// Bytes written again by compaction to free old segments.
    public var bytesRewritten: UInt64 = 0
    public var segmentsCreated: UInt64 = 0
    public var segmentsDeleted: UInt64 = 0
    /// Disk space of the deleted segments.
    public var bytesReclaimed: UInt64 = 0
    public var cacheHits: UInt64 = 0
    public var diskReads: UInt64 = 0

    /// (written + rewritten) / written.
    public var writeAmplification: Double {
        bytesWritten == 0 ? 1 : Double(bytesWritten + bytesRewritten) / Double(bytesWritten)
    }
}

import RaftConsensus

/// Why a WAL operation failed. Every case says what an operator or the caller can do.
public enum WALError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An I/O call failed (the path and errno are in the `IOError`).
    case io(IOError)
    /// The WAL stopped after a failure it cannot recover from in-process (an fdatasync or
    /// write failure); restart the process so that recovery runs.
    case stopped(cause: String)
    /// Damaged data in a place a crash cannot explain: the storage must not be served.
    case corrupt(file: String, offset: UInt64, reason: String)
    /// A file in the WAL directory that is not a segment of this format.
    case foreignFile(file: String, reason: String)
    /// The caller asked for something the group's log cannot do (a gap, an overwrite of
    /// compacted entries, decreasing terms): a bug in the layer above.
    case invalidWrite(group: GroupID, reason: String)
    /// A record larger than the log accepts.
    case tooLarge(bytes: Int, limit: Int)
    /// The requested entries were compacted away: send a snapshot instead.
    case compacted(group: GroupID, requested: LogIndex, firstIndex: LogIndex)
    /// The requested entries do not exist yet.
    case unavailable(group: GroupID, requested: LogIndex, lastIndex: LogIndex)
    /// The write queue is full; retry after some writes complete.
    case overloaded(queuedBytes: Int, limit: Int)
    /// A new segment could not be started (typically ENOSPC preallocating it). Nothing of
    /// the refused writes was written and the log stays usable: retry once space is freed.
    case segmentUnavailable(IOError)
    /// The log was closed.
    case closed

    /// What a caller does with the error: retry later (`overloaded`, `segmentUnavailable`:
    /// backpressure, nothing was written), stop (`io`, `stopped`, `corrupt`: the log cannot go
    /// on in this process), or treat it as a bug in the caller (`invalidWrite`, `tooLarge`).
    public var disposition: Disposition {
        switch self {
        case .overloaded, .segmentUnavailable: .retry
        case .invalidWrite, .tooLarge: .callerBug
        case .closed: .closed
        case .io, .stopped, .corrupt, .foreignFile, .compacted, .unavailable: .fatal
        }
    }

    public enum Disposition: Sendable, Equatable {
        case retry
        case fatal
        case callerBug
        case closed
    }

    public var description: String {
        switch self {
        case .io(let error): "WAL I/O: \(error)"
        case .stopped(let cause):
            "WAL stopped after an unrecoverable failure (\(cause)); restart the process so that recovery runs"
        case .corrupt(let file, let offset, let reason):
            "WAL corruption in \(file) at offset \(offset): \(reason); this storage must not be served: restore it or rebuild the replicas from their peers"
        case .foreignFile(let file, let reason): "unexpected file in the WAL directory: \(file): \(reason)"
        case .invalidWrite(let group, let reason): "invalid write for group \(group): \(reason)"
        case .tooLarge(let bytes, let limit): "record of \(bytes) bytes exceeds the WAL limit of \(limit) bytes"
        case .compacted(let group, let requested, let first):
            "group \(group): index \(requested) is compacted (first index \(first)); a snapshot is needed"
        case .unavailable(let group, let requested, let last):
            "group \(group): index \(requested) is beyond the last index \(last)"
        case .overloaded(let queued, let limit): "WAL queue full (\(queued) of \(limit) bytes); retry"
        case .segmentUnavailable(let error):
            "cannot start a new WAL segment (\(error)); nothing was written: free space on the storage, writes are retried"
        case .closed: "WAL closed"
        }
    }
}

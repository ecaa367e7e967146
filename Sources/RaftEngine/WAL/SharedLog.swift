import Logging
import RaftConsensus
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The write-ahead log shared by every replica on one storage (`<storage>/+raft/wal/`).
///
/// Callers on any thread hand it `GroupWrite`s; one writer thread per storage packs
/// everything queued into one batch, writes it with one submission linked to one
/// fdatasync, and completes every waiter of the batch together (group commit). While a
/// batch's fdatasync runs, the writer packs the next one; it submits it when the previous
/// is durable, so at most one batch is ever undurable, and only it can be torn by a crash.
///
/// Reads (`entries`, `term`, `firstIndex`, `lastIndex`, `hardState`) see only durable
/// records. See docs/WAL.md for the format, recovery and compaction.
public final class SharedLog: @unchecked Sendable {
    public struct Options: Sendable {
        /// Size each segment is preallocated to.
        public var segmentSize = 64 << 20
        /// Bounds of one batch (a caller's unit larger than this spans several batches; an
        /// entry larger than one batch is refused).
        public var maxBatchBytes = 8 << 20
        public var maxBatchWrites = 16_384
        /// How long the writer waits for more work after the first request when the disk
        /// is idle (0: never; batching then comes only from writes queued during an fdatasync).
        public var maxBatchDelayMicroseconds = 0
        /// Queued, not yet written bytes above which `append` answers `.overloaded`.
        public var maxQueuedBytes = 256 << 20
        /// Bytes of recent entries kept in memory for reads.
        public var cacheBytes = 64 << 20
        /// With more segments than this, groups that pin the oldest one are rewritten forward.
        public var maxSegments = 8
        /// The most bytes one rewrite round copies (rounds alternate with normal batches).
        public var maxRewriteBytesPerRound = 8 << 20
        public var ioBackend: IOBackendKind = IOBackendChoice.current.kind
        /// Builds the device the WAL writes through (tests inject faults here).
        public var makeDevice: @Sendable (IOBackendKind) throws(IOError) -> any WALDevice = { backend throws(IOError) in
            try BatchWriter(backend: backend, depth: 64, maxBatchesInFlight: 2)
        }
        /// Called once when the writer stops for good (an fdatasync or write failure). The
        /// default stops the process: after a failed fdatasync the page cache cannot be
        /// trusted, and restarting runs recovery from what is really on disk.
        public var onFatal: @Sendable (WALError) -> Void = { error in
            Logger(label: "raftd.wal").critical("stopping: \(error)")
            fatalError("WAL: \(error)")
        }

        public init() {}
    }

    public let directory: String
    public let options: Options
    let logger = Logger(label: "raftd.wal")

    // MARK: State shared with callers (guarded by `lock`)

    let lock = ConditionLock()
    var table = LogTable()
    var cache: EntryCache
    var statisticsStorage = WALStatistics()
    var queue: [Request] = []
    var queueHead = 0
    var queuedBytes = 0
    var isClosing = false
    var stoppedBy: WALError?

    // MARK: Writer thread state (touched only by the writer thread after init)

    let segments: SegmentStore
    let device: any WALDevice
    var currentSegment: UInt64 = 0
    var writeOffset = 0
    var nextBatchSequence: UInt64 = 1
    var shadow: [GroupID: ShadowState] = [:]
    var compactionPending = false
    /// A compaction round left work: run another after the next normal batch.
    var compactionOwed = false
    /// A failed segment creation was logged and no segment was created since.
    var segmentFailureLogged = false
    /// The segment count at the last "over budget" warning (one warning per count).
    var budgetWarningSegments = 0
    /// The writer thread (pthread_self), so that calls that would deadlock it are caught.
    let writerThread = Atomic<UInt>(0)
    /// `collectGarbage()` callers waiting for the next compaction round to finish.
    var gcWaiters: [Request] = []
    /// What the last recovery found, for logs and `raftd wal verify`.
    public internal(set) var recoveryReport = RecoveryReport()
    private var writerOSThread: OSThread?

    /// Opens the WAL in `directory` (which must exist), recovering what is on disk:
    /// checksums verified, a torn tail truncated, indexes rebuilt. Damage anywhere a crash
    /// cannot explain is `.corrupt` naming the file and offset, and nothing is served.
    public init(directory: String, options: Options = Options()) throws(WALError) {
        precondition(options.segmentSize >= 1 << 14 && options.segmentSize <= 1 << 31, "segmentSize out of range")
        precondition(
            options.maxBatchBytes >= 1 << 12
                && options.maxBatchBytes <= options.segmentSize - WALFormat.segmentHeaderSize
                    - WALFormat.batchHeaderSize,
            "maxBatchBytes must fit in a segment")
        precondition(options.maxSegments >= 2 && options.maxQueuedBytes >= options.maxBatchBytes)
        self.directory = directory
        self.options = options
        self.cache = EntryCache(capacityBytes: options.cacheBytes)
        do { self.device = try options.makeDevice(options.ioBackend) } catch { throw .io(error) }
        self.segments = SegmentStore(directory: directory, segmentSize: options.segmentSize, device: device)
        try recover()
        writerOSThread = OSThread(name: "raftd-wal") { [self] in runWriter() }
    }

    /// Stops the writer after everything queued is durable. Must be called: the writer
    /// thread keeps the log alive until then.
    public func close() {
        precondition(!isWriterThread, "SharedLog.close() from a completion would deadlock the writer")
        lock.withLock {
            isClosing = true
            lock.broadcast()
        }
        writerOSThread?.join()
        writerOSThread = nil
    }

    // MARK: - Writing

    /// Makes `writes` durable; `completion` runs on the writer thread once they are (or
    /// with the error).
    ///
    /// `writes` is one ordered unit of any size: the WAL cuts it into batches itself (a
    /// caller never sizes records), accepts or refuses it whole (`.overloaded` when the
    /// queue is full, `.segmentUnavailable` when no new segment can be started: nothing of
    /// it is written then), and makes its batches durable in order, each before the next is
    /// written. Writes queued together share batches (group commit).
    public func append(_ writes: [GroupWrite], completion: @escaping @Sendable (Result<Void, WALError>) -> Void) {
        enqueue(.writes(writes), completion: completion)
    }

    /// Makes `writes` durable; blocks the calling thread until they are.
    public func append(_ writes: [GroupWrite]) throws(WALError) {
        try waitFor { append(writes, completion: $0) }
    }

    /// Makes `writes` durable; suspends until they are.
    public func append(_ writes: [GroupWrite]) async throws(WALError) {
        let result: Result<Void, WALError> = await withCheckedContinuation { continuation in
            append(writes) { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    /// Records that the group's entries up to `index` (whose term is `term`) are covered by a
    /// snapshot. Their segments can then be deleted. An index at or below the current
    /// compaction point changes nothing.
    public func compact(group: GroupID, upTo index: LogIndex, term: Term) throws(WALError) {
        try waitFor { enqueue(.compact(group, index, term), completion: $0) }
    }

    /// `compact(group:upTo:term:)` without waiting: `completion` runs on the writer thread
    /// once the compaction record is durable (or failed).
    public func compact(
        group: GroupID, upTo index: LogIndex, term: Term,
        completion: @escaping @Sendable (Result<Void, WALError>) -> Void
    ) {
        enqueue(.compact(group, index, term), completion: completion)
    }

    /// Forgets everything about `group` on this storage (its replica was removed).
    public func removeGroup(_ group: GroupID) throws(WALError) {
        try waitFor { enqueue(.remove(group), completion: $0) }
    }

    /// Deletes every segment no group needs, and rewrites forward the groups that pin old
    /// segments when there are more than `maxSegments`. Runs on its own after each segment
    /// rotation; this call forces a round now and returns when it is done.
    public func collectGarbage() throws(WALError) {
        try waitFor { enqueue(.collectGarbage, completion: $0) }
    }

    private func waitFor(_ start: (@escaping @Sendable (Result<Void, WALError>) -> Void) -> Void) throws(WALError) {
        // Completions run on the writer thread; blocking it on its own queue never ends.
        precondition(!isWriterThread, "a blocking SharedLog call from a completion would deadlock the writer")
        let waiter = Waiter()
        start { waiter.finish($0) }
        try waiter.wait().get()
    }

    func enqueue(_ operation: Request.Operation, completion: @escaping @Sendable (Result<Void, WALError>) -> Void) {
        var size = WALFormat.recordSize(payload: 8)
        if case .writes(let writes) = operation {
            size = 0
            for write in writes {
                size += write.encodedSize
                // Every record must fit one batch on its own.
                for entry in write.entries where entry.payload.count > maxEntryPayloadBytes {
                    return completion(.failure(.tooLarge(bytes: entry.payload.count, limit: maxEntryPayloadBytes)))
                }
            }
        }
        let refusal: WALError? = lock.withLock {
            if let stoppedBy { return .stopped(cause: "\(stoppedBy)") }
            if isClosing { return .closed }
            // A unit that does not fit is still taken while the queue is less than half
            // full, so that a large unit cannot be starved by a stream of small ones; the
            // queue then holds at most half the bound plus one unit.
            if queuedBytes + size > options.maxQueuedBytes && queuedBytes >= options.maxQueuedBytes / 2 {
                return .overloaded(queuedBytes: queuedBytes, limit: options.maxQueuedBytes)
            }
            queue.append(Request(operation: operation, size: size, completion: completion))
            queuedBytes += size
            lock.broadcast()
            return nil
        }
        if let refusal { completion(.failure(refusal)) }
    }

    /// The largest entry payload: one entry record must fit a batch on its own.
    public var maxEntryPayloadBytes: Int {
        // Records are padded to 8 bytes: the padded record must fit the batch bound.
        let batch = options.maxBatchBytes & ~(WALFormat.alignment - 1)
        return min(WALFormat.maxPayloadSize, batch - WALFormat.recordSize(payload: 0))
    }

    // MARK: - Reading (durable state only)

    /// The groups that have anything in this log.
    public var groups: [GroupID] { lock.withLock { table.groups.keys.sorted() } }

    /// The first index with an entry (or that would have one), i.e. compacted index + 1.
    public func firstIndex(of group: GroupID) -> LogIndex {
        lock.withLock { table.groups[group]?.firstIndex ?? LogIndex(1) }
    }

    /// The last durable index (the compacted index when no entries follow it).
    public func lastIndex(of group: GroupID) -> LogIndex {
        lock.withLock { table.groups[group]?.lastIndex ?? .zero }
    }

    public func hardState(of group: GroupID) -> HardState? {
        lock.withLock { table.groups[group]?.hardState }
    }

    /// The index through which `group`'s log would be compacted to keep at most `bytes` of
    /// entry payloads (its compacted index when all of it fits).
    public func compactionIndex(of group: GroupID, keepingAtMost bytes: UInt64) -> LogIndex {
        lock.withLock { table.groups[group]?.startOfSuffix(holdingAtMost: bytes) ?? .zero }
    }

    /// The term of the entry at `index`; the compacted index's term is known too.
    public func term(of group: GroupID, at index: LogIndex) throws(WALError) -> Term {
        let outcome: Result<Term, WALError> = lock.withLock {
            // Read in place: copying a group's log would retain its arrays on every lookup.
            if let term = table.groups[group]?.term(at: index) { return .success(term) }
            let base = table.groups[group]?.base ?? .zero
            if index < base {
                return .failure(.compacted(group: group, requested: index, firstIndex: base.next))
            }
            return .failure(
                .unavailable(group: group, requested: index, lastIndex: table.groups[group]?.lastIndex ?? .zero))
        }
        return try outcome.get()
    }

    public var statistics: WALStatistics { lock.withLock { statisticsStorage } }

    var isWriterThread: Bool {
        let writer = writerThread.load(ordering: .acquiring)
        return writer != 0 && pthread_equal(pthread_t(writer), pthread_self()) != 0
    }
}

extension SharedLog {
    /// A queued operation and whom to tell when it is durable.
    struct Request {
        enum Operation {
            case writes([GroupWrite])
            case compact(GroupID, LogIndex, Term)
            case remove(GroupID)
            case collectGarbage
        }

        var operation: Operation
        var size: Int
        var completion: @Sendable (Result<Void, WALError>) -> Void
    }

    /// What the writer has encoded for a group, durable or not: the basis for validating
    /// the next write before the previous batch is durable.
    struct ShadowState {
        var base: LogIndex
        var last: LogIndex
        var lastTerm: Term
    }
}

/// Blocks a thread until a completion arrives.
final class Waiter: @unchecked Sendable {
    private let lock = ConditionLock()
    private var result: Result<Void, WALError>?

    func finish(_ result: Result<Void, WALError>) {
        lock.withLock {
            self.result = result
            lock.broadcast()
        }
    }

    func wait() -> Result<Void, WALError> {
        lock.withLock {
            while result == nil { lock.wait() }
            return result!
        }
    }
}

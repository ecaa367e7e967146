import Logging
import Synchronization

/// Makes applied partition state durable in rounds, off the apply path: one thread per
/// storage. A round takes every partition that applied something since the last round,
/// notes what each holds, fsyncs what their applies touched, then records each
/// partition's applied index (and values). No apply worker ever waits for a disk flush.
public final class PartitionCheckpointer: @unchecked Sendable {
    public let storageRoot: String
    public let intervalNanoseconds: Int
    private let lock = ConditionLock()
    /// Held for each round's writes, and by a snapshot install writing its checkpoint
    /// record: two writers of one replica's slots would pick the same free slot.
    private let roundLock = ConditionLock()
    private var dirty: [ObjectIdentifier: PartitionStateMachine] = [:]
    private var stopping = false
    private var thread: OSThread?
    /// Rounds done (tests, metrics).
    private let roundsDone = Atomic<Int>(0)

    /// Called once when a round fails (an fsync or write error). The default stops the
    /// process, as the WAL does: after a failed fsync the kernel may have dropped the
    /// dirty pages and reports the error only once, so a retry that "succeeds" would
    /// record a checkpoint over data that is not on disk (and re-apply would never rewrite
    /// it). A restart re-applies from the last durable checkpoint. With a handler that
    /// returns, the checkpointer takes no more rounds.
    let onFatal: @Sendable (any Error) -> Void
    private var failed = false

    /// One round a second by default (the round's fsyncs share the disk with the WAL's).
    ///
    /// First makes everything the page cache holds for the storage's file system durable
    /// (one syncfs), before any replica of it opens: a replica must not trust checkpoint
    /// records or repository files that a killed process wrote but never synced (they are
    /// read back from the cache, and a later power loss would tear them).
    public init(
        storageRoot: String, intervalMilliseconds: Int = 1_000,
        onFatal: @escaping @Sendable (any Error) -> Void = { error in
            Logger(label: "raftd.checkpoint").critical("stopping: \(error)")
            fatalError("checkpoint: \(error)")
        }
    ) throws(IOError) {
        self.storageRoot = storageRoot
        self.onFatal = onFatal
        intervalNanoseconds = intervalMilliseconds * 1_000_000
        let root = try DiskFile.open(storageRoot, .directory)
        defer { try? root.close() }
        try root.syncFileSystem()
        thread = OSThread(name: "raftd-checkpoint") { [self] in run() }
    }

    public var rounds: Int { roundsDone.load(ordering: .relaxed) }

    /// `machine` applied entries not yet made durable.
    func markDirty(_ machine: PartitionStateMachine) {
        lock.withLock {
            if failed { return }
            if dirty.isEmpty { lock.broadcast() }
            dirty[ObjectIdentifier(machine)] = machine
        }
    }

    /// Runs `body` with no round writing meanwhile.
    func exclusively<T>(_ body: () throws(IOError) -> T) throws(IOError) -> T {
        try roundLock.withLock { () throws(IOError) -> T in try body() }
    }

    /// Runs `body`, which cannot fail, with no round writing meanwhile.
    func exclusivelyRunning(_ body: () -> Void) {
        roundLock.withLock { body() }
    }

    /// Runs a last round for what is dirty, then stops the thread.
    public func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        thread?.join()
        thread = nil
    }

    private func run() {
        while true {
            let batch: [PartitionStateMachine]? = lock.withLock {
                while dirty.isEmpty && !stopping { lock.wait() }
                if dirty.isEmpty { return nil }
                // Gather for an interval, so one syncfs covers many partitions.
                if !stopping { _ = lock.wait(nanoseconds: intervalNanoseconds) }
                defer { dirty = [:] }
                return Array(dirty.values)
            }
            guard let batch else { return }
            do {
                try roundLock.withLock { () throws(IOError) in
                    try PartitionStateMachine.checkpoint(batch, storageRoot: storageRoot)
                }
            } catch {
                lock.withLock {
                    failed = true
                    dirty = [:]
                }
                onFatal(error)
                return
            }
            roundsDone.wrappingAdd(1, ordering: .relaxed)
        }
    }
}

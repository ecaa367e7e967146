import Synchronization

/// Makes applied partition state durable in rounds, off the apply path: one thread per
/// storage. A round takes every partition that applied something since the last round,
/// notes what each holds, fsyncs what their applies touched, then records each
/// partition's applied index (and values). No apply worker ever waits for a disk flush.
public final class PartitionCheckpointer: @unchecked Sendable {
    public let storageRoot: String
    public let intervalNanoseconds: Int
    private let lock = ConditionLock()
    private var dirty: [ObjectIdentifier: PartitionStateMachine] = [:]
    private var stopping = false
    private var thread: OSThread?
    /// Rounds done (tests, metrics).
    private let roundsDone = Atomic<Int>(0)

    /// One round a second by default (the round's fsyncs share the disk with the WAL's).
    public init(storageRoot: String, intervalMilliseconds: Int = 1_000) {
        self.storageRoot = storageRoot
        intervalNanoseconds = intervalMilliseconds * 1_000_000
        thread = OSThread(name: "raftd-checkpoint") { [self] in run() }
    }

    public var rounds: Int { roundsDone.load(ordering: .relaxed) }

    /// `machine` applied entries not yet made durable.
    func markDirty(_ machine: PartitionStateMachine) {
        lock.withLock {
            if dirty.isEmpty { lock.broadcast() }
            dirty[ObjectIdentifier(machine)] = machine
        }
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
                try PartitionStateMachine.checkpoint(batch, storageRoot: storageRoot)
            } catch {
                // The state stays applied in memory; a restart re-applies from the last
                // recorded index. A failing disk shows up in the WAL too, which stops.
                for m in batch { markDirty(m) }
            }
            roundsDone.wrappingAdd(1, ordering: .relaxed)
        }
    }
}

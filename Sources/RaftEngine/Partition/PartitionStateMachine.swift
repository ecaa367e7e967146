import RaftConsensus
import Synchronization

/// The state machine of one partition replica: applies the verified transactions of its
/// log to real bare repositories under the storage root, in git's formats, with no `git`
/// process.
///
/// Apply is unconditional and idempotent (the leader verified each transaction against
/// its state first). It is not on the fsync path: the WAL made the entries durable. A
/// checkpoint makes what apply touched durable (fsync of each written file and directory),
/// then records the applied index and values in a checkpoint slot (`CheckpointRecord`);
/// with a `PartitionCheckpointer` that happens in rounds on its own thread, shared by the
/// storage's partitions, so no apply waits for a flush. A crash re-applies from the
/// recorded index (the host hands out entries from the state machine's index when it is
/// behind its own record), to the same bytes.
///
/// Layout of the replica's directory: `checkpoint.0` and `checkpoint.1` (the applied index
/// and the partition's key-value pairs as of it; `applied` and `values` files in the
/// layout before them, still read), `attachments/<sha256>.{pack,idx}` (packs carried
/// beside the log), `staging/` (inline packs on their way in), `incoming/` (quarantines of
/// pushed packs being validated on the leader), `snapshots/` and `snapshot-staging/`
/// (snapshots prepared and received) and `install` (an install to roll forward;
/// `PartitionSnapshot.swift`).
public final class PartitionStateMachine: StateMachine, Sendable {
    public let storageRoot: String
    public let directory: String
    struct State {
        var applied: LogIndex
        var values: [String: [UInt8]]
        /// The applied index of the last checkpoint, and when it was taken.
        var checkpointed: LogIndex
        var checkpointedAtNanoseconds: Int
        /// The slot holding the newest durable checkpoint record, and its sequence (nil:
        /// none yet, or only the files of the earlier layout).
        var checkpointSlot: Int?
        var checkpointSequence: UInt64 = 0
        /// The `applied` and `values` files of the layout before slots are still there
        /// (removed after the first durable slot record, so they can never win later).
        var legacyFiles = false
        /// A snapshot install whose files are in place and whose log reset the host has not
        /// confirmed (`finishRestore`), and the staged directory it came from.
        var pendingInstall: SnapshotMetadata?
        var pendingStaged: String?
        /// Its data is being deleted (the replica left its group): no checkpoint writes.
        var removed = false
    }
    /// A checkpoint at most this often (and at the end of a batch that reaches it): it
    /// costs a syncfs, so it must not come with every small batch.
    public let checkpointIntervalNanoseconds: Int
    let state: Mutex<State>
    /// Held exclusively while an apply call changes repositories, shared by readers: a
    /// reader sees whole transactions, and exactly the state of the applied index it reports.
    let view = ReadWriteLock(preferWriters: true)
    /// What apply wrote since the last checkpoint.
    let touched = TouchedPaths()

    /// Opens the replica's state at `directory` (created if missing), reading the applied
    /// index and values of its last checkpoint.
    /// Takes the checkpoints, shared with the storage's other partitions; nil: this state
    /// machine takes its own, at most every `checkpointIntervalMilliseconds`, in `apply`.
    public let checkpointer: PartitionCheckpointer?
    /// The partition this replica belongs to and the storage's registry of repositories,
    /// which apply keeps current (nil: not registered, as in tests of apply alone).
    public let partition: PartitionKey?
    public let registry: (any RepositoryRegistry)?

    public init(
        storageRoot: String, directory: String, checkpointer: PartitionCheckpointer? = nil,
        checkpointIntervalMilliseconds: Int = 50, partition: PartitionKey? = nil,
        registry: (any RepositoryRegistry)? = nil
    ) throws(StateMachineError) {
        precondition((partition == nil) == (registry == nil), "a registry needs the partition it registers into")
        self.storageRoot = storageRoot
        self.directory = directory
        self.checkpointer = checkpointer
        self.partition = partition
        self.registry = registry
        checkpointIntervalNanoseconds = checkpointIntervalMilliseconds * 1_000_000
        do {
            let files = RepositoryFiles(path: directory)
            try files.makeLayout(["attachments", "staging", "incoming"])
            var applied: LogIndex?
            var values: [String: [UInt8]] = [:]
            let slots = try (0..<CheckpointRecord.slots).map { slot throws(IOError) in
                try files.contents(CheckpointRecord.slotName(slot))
            }
            let newest = try CheckpointRecord.newest(slots, in: directory)
            if let (record, _) = newest {
                applied = record.applied
                values = try Self.decodeValues(record.values)
            } else {
                // The layout before checkpoint slots: `applied` and `values` files.
                if let bytes = try files.contents("applied") {
                    guard let value = UInt64(String(decoding: bytes, as: UTF8.self).trimmingNewline) else {
                        throw StateMachineError(
                            "the applied index file is damaged (\(bytes.count) bytes, not a number)")
                    }
                    applied = LogIndex(value)
                }
                values = try files.contents("values").map(Self.decodeValues) ?? [:]
            }
            var initial = State(
                applied: applied ?? .zero, values: values, checkpointed: applied ?? .zero,
                checkpointedAtNanoseconds: MonotonicClock.system.nanoseconds)
            initial.checkpointSlot = newest?.slot
            initial.checkpointSequence = newest?.0.sequence ?? 0
            initial.legacyFiles = FileSystem.exists(directory + "/applied") || FileSystem.exists(directory + "/values")
            state = Mutex(initial)
            // A snapshot install that passed its point of no return before a crash: finish it
            // before anything reads the repositories.
            var keepStaged: String?
            if let bytes = try files.contents(InstallIntent.fileName) {
                let intent = try InstallIntent(decoding: bytes)
                if initial.checkpointed > intent.index {
                    // Finished, and later state checkpointed since: only the record was left.
                    try FileSystem.removeFile(directory + "/" + InstallIntent.fileName)
                } else {
                    try rollForward(intent)
                    keepStaged = intent.staged
                }
            }
            // Snapshots received but not installed, and views prepared for followers.
            try files.makeLayout(["snapshot-staging"])
            for name in try FileSystem.list(directory + "/snapshot-staging") where name != keepStaged {
                try FileSystem.removeTree(directory + "/snapshot-staging/" + name)
            }
            if FileSystem.exists(directory + "/snapshots") { try FileSystem.removeTree(directory + "/snapshots") }
            // Inline packs left in staging by a crash are re-written on re-apply.
            for name in try FileSystem.list(directory + "/staging") {
                try FileSystem.removeFile(directory + "/staging/" + name)
            }
            // Lock files a crash left in the partition's repositories (git would refuse to
            // update a reference whose lock exists). Re-apply rewrites what it touches;
            // this covers the rest.
            if let registry, let partition {
                for path in try registry.repositories(of: partition) {
                    try RepositoryFiles(path: storageRoot + "/" + path.rawValue).removeStaleLocks()
                }
            }
            try AttachmentStore(directory: directory + "/attachments").recover()
            // Quarantines of pack validations a crash interrupted (nothing refers to them).
            for name in try FileSystem.list(directory + "/incoming") {
                try FileSystem.removeTree(directory + "/incoming/" + name)
            }
        } catch {
            throw StateMachineError("opening partition state in \(directory): \(error)")
        }
    }

    /// What the repositories hold (a restart reopens at the last checkpoint's index).
    public var appliedIndex: LogIndex { state.withLock { $0.applied } }

    /// The applied index of the last checkpoint.
    public var checkpointedIndex: LogIndex { state.withLock { $0.checkpointed } }

    /// What a restart reopens at: the last checkpoint.
    public var durableIndex: LogIndex { checkpointedIndex }

    /// The partition's value for `key` as of the applied index.
    public func value(_ key: String) -> [UInt8]? { state.withLock { $0.values[key] } }

    /// The repository at `path` under the storage root.
    public func repository(_ path: RelativePath) -> RepositoryFiles {
        RepositoryFiles(path: storageRoot + "/" + path.rawValue, touched: touched)
    }

    public func apply(_ entries: [Entry]) throws(StateMachineError) {
        guard !entries.isEmpty else { return }
        try view.withExclusive { () throws(StateMachineError) in try applyExclusively(entries) }
    }

    /// Reads the repositories as of the applied index, which it returns with the result:
    /// no transaction is half applied meanwhile.
    public func read<T>(_ body: (LogIndex) throws(PartitionError) -> T) throws(PartitionError) -> (LogIndex, T) {
        try view.withShared { () throws(PartitionError) in
            let index = appliedIndex
            return (index, try body(index))
        }
    }

    private func applyExclusively(_ entries: [Entry]) throws(StateMachineError) {
        guard let last = entries.last else { return }
        // The batch's key-value changes, merged into the state at the end, in place: a
        // copy of the whole map per apply (`var values = state.values`, then a mutation)
        // cost a retain per key and value, and was a fifth of three nodes' CPU with 4,096
        // keys in one partition.
        var values: [String: [UInt8]?] = [:]
        for entry in entries {
            guard case .normal(let bytes) = entry.payload, !bytes.isEmpty else { continue }
            let transaction: PartitionTransaction
            do { transaction = try PartitionEntryCodec.decode(bytes) } catch {
                throw StateMachineError("entry \(entry.index): \(error)")
            }
            do {
                for op in transaction.operations { try apply(op, index: entry.index, values: &values) }
            } catch {
                throw StateMachineError("applying entry \(entry.index): \(error)")
            }
        }
        let due = state.withLock { s in
            s.applied = last.index
            for (key, value) in values { s.values[key] = value }
            return MonotonicClock.system.nanoseconds - s.checkpointedAtNanoseconds >= checkpointIntervalNanoseconds
        }
        if let checkpointer {
            checkpointer.markDirty(self)
        } else if due {
            try checkpoint()
        }
    }

    /// Makes everything applied durable: the repositories (one syncfs), then the applied
    /// index and values that describe them. Until then a restart re-applies from the last
    /// checkpoint, to the same bytes; the host offers those entries again.
    public func checkpoint() throws(StateMachineError) {
        // Two writers of one replica's slots would pick the same free slot and sequence.
        precondition(checkpointer == nil, "this replica's checkpoints are its checkpointer's")
        do { try Self.checkpoint([self], storageRoot: storageRoot) } catch {
            throw StateMachineError("checkpoint of \(directory): \(error)")
        }
    }

    /// One checkpoint round for several partitions of one storage: note what each holds,
    /// make what their applies touched durable (file and directory fsyncs, or one syncfs
    /// when there are many), then write each one's checkpoint record (applied index and
    /// values) into its free slot and make those durable the same way.
    ///
    /// Two flushes, in this order: a record must never be durable before the repository
    /// files it describes (a crash would leave an index whose effects are not on disk).
    static func checkpoint(_ machines: [PartitionStateMachine], storageRoot: String) throws(IOError) {
        let noted = machines.compactMap { m -> (PartitionStateMachine, LogIndex, [String: [UInt8]], Int?, UInt64)? in
            let (applied, values, done, slot, sequence, removed) = m.state.withLock {
                ($0.applied, $0.values, $0.checkpointed, $0.checkpointSlot, $0.checkpointSequence, $0.removed)
            }
            return applied > done && !removed ? (m, applied, values, slot, sequence) : nil
        }
        guard !noted.isEmpty else { return }
        // All partitions' paths together: one decision between fsyncs and one syncfs.
        let round = TouchedPaths()
        for (m, _, _, _, _) in noted { m.touched.move(into: round) }
        do {
            try round.flush(fileSystem: storageRoot)
        } catch {
            // Not durable: the first partition keeps them for the next round.
            round.move(into: noted[0].0.touched)
            throw error
        }
        CrashPoints.reached()
        let records = TouchedPaths()
        var written: [(PartitionStateMachine, LogIndex, slot: Int, sequence: UInt64)] = []
        var bytes = 0
        for (m, applied, values, slot, sequence) in noted {
            // The slot without the newest durable record (the first one when there is none).
            let free = slot.map { ($0 + 1) % CheckpointRecord.slots } ?? 0
            let record = CheckpointRecord(sequence: sequence + 1, applied: applied, values: encodeValues(values))
            let encoded = record.encoded()
            let path = m.directory + "/" + CheckpointRecord.slotName(free)
            let created = !FileSystem.exists(path)
            let file = try DiskFile.open(path, .createReadWrite)
            let result = encoded.withUnsafeBytes { raw in
                Result { () throws(IOError) in try file.write(toAbsoluteOffset: 0, raw) }
            }
            try? file.close()
            try result.get()
            CrashPoints.reached()
            records.note(path)
            if created { records.note(m.directory) }
            written.append((m, applied, free, sequence + 1))
            bytes += encoded.count
        }
        try records.flush(fileSystem: storageRoot, ownDirtyBytes: bytes)
        CrashPoints.reached()
        let legacy = TouchedPaths()
        for (m, applied, slot, sequence) in written {
            let hadLegacy = m.state.withLock { state in
                state.checkpointed = max(state.checkpointed, applied)
                state.checkpointedAtNanoseconds = MonotonicClock.system.nanoseconds
                state.checkpointSlot = slot
                state.checkpointSequence = sequence
                let had = state.legacyFiles
                state.legacyFiles = false
                return had
            }
            if hadLegacy {
                for name in ["applied", "values", "applied.lock", "values.lock"]
                where FileSystem.exists(m.directory + "/" + name) {
                    try FileSystem.removeFile(m.directory + "/" + name)
                }
                legacy.note(m.directory)
            }
        }
        try legacy.flush()
    }

    /// Deletes the partition's repositories on this storage and the replica's directory.
    /// No checkpoint round writes into it from the moment it starts.
    public func removeAllData() throws(StateMachineError) {
        let mark = { self.state.withLock { $0.removed = true } }
        if let checkpointer { checkpointer.exclusivelyRunning(mark) } else { mark() }
        do {
            if let registry, let partition {
                for path in try registry.repositories(of: partition) {
                    try FileSystem.removeTree(storageRoot + "/" + path.rawValue)
                }
            }
            try FileSystem.removeTree(directory)
        } catch {
            throw StateMachineError("deleting the data of \(directory): \(error)")
        }
    }

    /// `values`: the batch's changes so far (nil: deleted).
    private func apply(_ op: PartitionOperation, index: LogIndex, values: inout [String: [UInt8]?]) throws {
        switch op {
        case .createRepository(let path, let branch):
            try register(path)
            try repository(path).create(defaultBranch: branch)
        case .createObjectPool(let path):
            try register(path)
            try repository(path).create(defaultBranch: try RefName("refs/heads/main"))
        case .adoptRepository(let path):
            try register(path)
        case .removeRepository(let path):
            let repo = repository(path).path
            if FileSystem.exists(repo) {
                try FileSystem.removeTree(repo)
                touched.note(parentOf: repo)
                CrashPoints.reached()
            }
            if let registry, let partition { try registry.unregister(path, from: partition) }
        case .updateReferences(let path, let updates):
            // setReference makes room: `refs/heads/a` deleted for `refs/heads/a/b` (RepositoryFiles).
            try repository(path).updateReferences(
                deleting: updates.filter(\.isDeletion).map(\.name),
                setting: updates.filter { !$0.isDeletion }.map { ($0.name, $0.new) })
        case .setHead(let path, let target):
            try repository(path).setHead(target)
        case .attachPack(let path, .attachment(let hash, let packBytes, let indexBytes)):
            let store = AttachmentStore(directory: directory + "/attachments")
            guard let id = try? AttachmentID(hash: hash, sizes: [packBytes, indexBytes]), store.contains(id) else {
                throw StateMachineError(
                    "attachment \(SHA256.hex(hash)) (\(packBytes) + \(indexBytes) bytes) is not on this replica, or has other sizes"
                )
            }
            let files = store.paths(id)
            try repository(path).attachPack(pack: files[0], index: files[1])
        case .attachPack(let path, .inline(let pack, let packIndex)):
            let staging = RepositoryFiles(path: directory + "/staging", touched: touched)
            let stem = "entry-\(index.rawValue)"
            try staging.writeFile(stem + ".pack", pack)
            try staging.writeFile(stem + ".idx", packIndex)
            try repository(path).attachPack(
                pack: staging.path + "/" + stem + ".pack", index: staging.path + "/" + stem + ".idx")
            try FileSystem.removeFile(staging.path + "/" + stem + ".pack")
            try FileSystem.removeFile(staging.path + "/" + stem + ".idx")
            CrashPoints.reached()
        case .linkToPool(let path, let pool):
            try repository(path).setAlternates(pool: repository(pool).path)
        case .unlinkFromPool(let path):
            try repository(path).setAlternates(pool: nil)
        case .setValue(let key, let value):
            values[key] = .some(value)
        case .deleteValue(let key):
            values[key] = .some(nil)
        }
    }

    /// Registers a repository of this partition (its registry write is durable at once: an
    /// LMDB transaction; again on re-apply changes nothing).
    private func register(_ path: RelativePath) throws(PartitionError) {
        if let registry, let partition { try registry.register(path, in: partition) }
    }

    /// `values`: u32 count, then (u16 key length, key, u32 value length, value), sorted by key.
    static func encodeValues(_ values: [String: [UInt8]]) -> [UInt8] {
        var w = ByteWriter(version: 1)
        w.u32(UInt32(values.count))
        for key in values.keys.sorted() {
            let k = Array(key.utf8)
            w.u16(UInt16(k.count))
            w.append(k)
            w.u32(UInt32(values[key]!.count))
            w.append(values[key]!)
        }
        return w.bytes
    }

    static func decodeValues(_ bytes: [UInt8]) throws -> [String: [UInt8]] {
        do {
            var r = ByteReader(bytes)
            try r.expectVersion(1)
            var out: [String: [UInt8]] = [:]
            for _ in 0..<Int(try r.u32()) {
                let key = String(decoding: try r.take(Int(try r.u16())), as: UTF8.self)
                out[key] = try r.take(Int(try r.u32()))
            }
            try r.expectEnd()
            return out
        } catch {
            throw StateMachineError("partition values file: \(error.reason)")
        }
    }
}

extension String {
    fileprivate var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}

import RaftConsensus
import Synchronization

/// The state machine of one partition replica: applies the verified transactions of its
/// log to real bare repositories under the storage root, in git's formats, with no `git`
/// process.
///
/// Apply is unconditional and idempotent (the leader verified each transaction against
/// its state first). It is not on the fsync path: the WAL made the entries durable. A
/// checkpoint makes what apply touched durable (fsync of each written file and directory),
/// then records the applied index in `<directory>/applied` (lock file, rename);
/// with a `PartitionCheckpointer` that happens in rounds on its own thread, shared by the
/// storage's partitions, so no apply waits for a flush. A crash re-applies from the
/// recorded index (the host hands out entries from the state machine's index when it is
/// behind its own record), to the same bytes.
///
/// Layout of the replica's directory: `applied` (the index), `values` (the partition's
/// key-value pairs as of that index), `attachments/<sha256>.{pack,idx}` (packs carried
/// beside the log), `staging/` (inline packs on their way in), `incoming/` (quarantines of
/// pushed packs being validated on the leader).
public final class PartitionStateMachine: StateMachine, Sendable {
    public let storageRoot: String
    public let directory: String
    private struct State {
        var applied: LogIndex
        var values: [String: [UInt8]]
        /// The applied index of the last checkpoint, and when it was taken.
        var checkpointed: LogIndex
        var checkpointedAtNanoseconds: Int
    }
    /// A checkpoint at most this often (and at the end of a batch that reaches it): it
    /// costs a syncfs, so it must not come with every small batch.
    public let checkpointIntervalNanoseconds: Int
    private let state: Mutex<State>
    /// Held exclusively while an apply call changes repositories, shared by readers: a
    /// reader sees whole transactions, and exactly the state of the applied index it reports.
    private let view = ReadWriteLock(preferWriters: true)
    /// What apply wrote since the last checkpoint.
    private let touched = TouchedPaths()

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
            if let bytes = try files.contents("applied") {
                guard let value = UInt64(String(decoding: bytes, as: UTF8.self).trimmingNewline) else {
                    throw StateMachineError("the applied index file is damaged (\(bytes.count) bytes, not a number)")
                }
                applied = LogIndex(value)
            }
            let values = try files.contents("values").map(Self.decodeValues) ?? [:]
            state = Mutex(
                State(
                    applied: applied ?? .zero, values: values, checkpointed: applied ?? .zero,
                    checkpointedAtNanoseconds: MonotonicClock.system.nanoseconds))
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
        do { try Self.checkpoint([self], storageRoot: storageRoot) } catch {
            throw StateMachineError("checkpoint of \(directory): \(error)")
        }
    }

    /// One checkpoint round for several partitions of one storage: note what each holds,
    /// make what their applies touched durable (file and directory fsyncs), then record
    /// each one's applied index and values, durable too.
    static func checkpoint(_ machines: [PartitionStateMachine], storageRoot: String) throws(IOError) {
        let noted = machines.compactMap { m -> (PartitionStateMachine, LogIndex, [String: [UInt8]])? in
            let (applied, values, done) = m.state.withLock { ($0.applied, $0.values, $0.checkpointed) }
            return applied > done ? (m, applied, values) : nil
        }
        guard !noted.isEmpty else { return }
        // All partitions' paths together: one decision between fsyncs and one syncfs.
        let round = TouchedPaths()
        for (m, _, _) in noted { m.touched.move(into: round) }
        // The records' new contents are staged in lock files first, so the same flush
        // makes them durable with the repositories: two syncfs calls for a round of a
        // thousand partitions, where fsyncing each record took two thousand fsyncs a
        // second and starved the WAL's fdatasyncs (measured: 1,000 busy partitions ran at a
        // third of the rate of one).
        let staged = TouchedPaths()
        var stagedBytes = 0
        do {
            for (m, applied, values) in noted {
                let files = RepositoryFiles(path: m.directory, touched: staged)
                let encoded = encodeValues(values)
                let index = Array("\(applied.rawValue)\n".utf8)
                try files.stage("values", encoded)
                try files.stage("applied", index)
                stagedBytes += encoded.count + index.count
            }
            staged.move(into: round)
            // The records just staged are dirty data the round writes either way: they do
            // not count against the limit that keeps a syncfs from flushing other work.
            try round.flush(fileSystem: storageRoot, ownDirtyBytes: stagedBytes)
        } catch {
            // Not durable: the first partition keeps them for the next round (the staged
            // files are written again then; a renamed-away path is skipped by a flush).
            round.move(into: noted[0].0.touched)
            throw error
        }
        CrashPoints.reached()
        // Durable before the rename: an empty `applied` would read as 0 after a power
        // failure. `values` first: a crash between the two leaves newer values with an
        // older index, and re-applying the entries in between converges (sets and deletes
        // are absolute).
        let records = TouchedPaths()
        for (m, _, _) in noted {
            let files = RepositoryFiles(path: m.directory, touched: records)
            try files.commitStaged("values")
            try files.commitStaged("applied")
        }
        try records.flush(fileSystem: storageRoot)
        CrashPoints.reached()
        for (m, applied, _) in noted {
            m.state.withLock {
                $0.checkpointed = max($0.checkpointed, applied)
                $0.checkpointedAtNanoseconds = MonotonicClock.system.nanoseconds
            }
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
            // Deletions first: `refs/heads/a` may make room for `refs/heads/a/b`.
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

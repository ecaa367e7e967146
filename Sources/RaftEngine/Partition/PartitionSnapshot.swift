import RaftConsensus

/// The bytes of a record that ends with the CRC-32C (big-endian) of everything before it,
/// without the checksum; damage when it does not match.
private func checkedBody(_ bytes: [UInt8]) throws(DecodeFailure) -> [UInt8] {
    guard bytes.count >= 5 else { throw DecodeFailure("\(bytes.count) bytes") }
    let body = Array(bytes[..<(bytes.count - 4)])
    guard CRC32C.checksum(body) == bytes.suffix(4).reduce(UInt32(0), { $0 << 8 | UInt32($1) }) else {
        throw DecodeFailure("checksum mismatch")
    }
    return body
}

/// What a partition snapshot holds besides its repositories' files (its `state` file):
/// the partition's key-value pairs and its repositories, each with the object pool it
/// borrows from (the `alternates` file names an absolute path of the sender's storage, so
/// it is not sent; the receiver writes its own).
///
/// Layout: u8 version (1), u32 values length, values (`PartitionStateMachine.encodeValues`),
/// u32 repository count, each: u16 length, path, u16 length, pool path (0: none), u32
/// CRC-32C of everything before it.
struct PartitionSnapshotState: Equatable {
    var values: [String: [UInt8]]
    var repositories: [Repository]

    struct Repository: Equatable {
        var path: RelativePath
        var pool: RelativePath?
    }

    static let version: UInt8 = 1
    static let fileName = "state"
    static let repositoriesDirectory = "repositories"

    func encoded() -> [UInt8] {
        var w = ByteWriter(version: Self.version)
        let v = PartitionStateMachine.encodeValues(values)
        w.u32(UInt32(v.count))
        w.append(v)
        w.u32(UInt32(repositories.count))
        for r in repositories {
            let p = Array(r.path.rawValue.utf8)
            w.u16(UInt16(p.count))
            w.append(p)
            let pool = Array((r.pool?.rawValue ?? "").utf8)
            w.u16(UInt16(pool.count))
            w.append(pool)
        }
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    init(values: [String: [UInt8]], repositories: [Repository]) {
        self.values = values
        self.repositories = repositories
    }

    init(decoding bytes: [UInt8]) throws(StateMachineError) {
        do {
            var r = ByteReader(try checkedBody(bytes))
            try r.expectVersion(Self.version)
            values = try PartitionStateMachine.decodeValues(try r.take(Int(try r.u32())))
            repositories = []
            for _ in 0..<Int(try r.u32()) {
                let path = try r.take(Int(try r.u16()))
                let pool = try r.take(Int(try r.u16()))
                repositories.append(
                    Repository(
                        path: try DecodeFailure.validating { () throws(IdentityError) in try RelativePath(bytes: path)
                        },
                        pool: pool.isEmpty
                            ? nil
                            : try DecodeFailure.validating { () throws(IdentityError) in try RelativePath(bytes: pool) }
                    ))
            }
            try r.expectEnd()
        } catch let error as DecodeFailure {
            throw StateMachineError("the snapshot's state file is damaged: \(error.reason)")
        } catch {
            throw StateMachineError("the snapshot's state file is damaged: \(error)")
        }
    }
}

/// A point-in-time view of a partition made on the leader for a follower: its
/// repositories' immutable files hard-linked and the rest copied into a directory of the
/// replica, so that apply goes on while the view is streamed.
public struct PreparedPartitionSnapshot: Sendable {
    /// The applied index it shows.
    public let index: LogIndex
    public let directory: String
    /// Directories before their contents.
    public let items: [SnapshotItem]
    public let totalBytes: UInt64
    /// How long apply was held back (the link pass).
    public let linkNanoseconds: Int
}

/// A snapshot install that is past its point of no return: recorded durably before the
/// first repository moves, so that a restart finishes it (roll forward) instead of leaving
/// a mix of old and new. Removed once the host has made the log reset durable.
///
/// Layout: u8 version (1), u64 index, u64 term, u16 length, configuration (stored form),
/// u16 length, the staged directory's name, u32 count and the old repositories (u16 length,
/// path each), u32 CRC-32C of everything before it.
struct InstallIntent: Equatable {
    var index: LogIndex
    var term: Term
    var confState: ConfState
    var staged: String
    var oldRepositories: [RelativePath]

    static let version: UInt8 = 1
    static let fileName = "install"

    func encoded() -> [UInt8] {
        var w = ByteWriter(version: Self.version)
        w.u64(index.rawValue)
        w.u64(term.rawValue)
        let conf = (try? StoredConfState(confState))?.encoded ?? []
        w.u16(UInt16(conf.count))
        w.append(conf)
        let name = Array(staged.utf8)
        w.u16(UInt16(name.count))
        w.append(name)
        w.u32(UInt32(oldRepositories.count))
        for path in oldRepositories {
            let p = Array(path.rawValue.utf8)
            w.u16(UInt16(p.count))
            w.append(p)
        }
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    init(index: LogIndex, term: Term, confState: ConfState, staged: String, oldRepositories: [RelativePath]) {
        self.index = index
        self.term = term
        self.confState = confState
        self.staged = staged
        self.oldRepositories = oldRepositories
    }

    init(decoding bytes: [UInt8]) throws(StateMachineError) {
        do {
            var r = ByteReader(try checkedBody(bytes))
            try r.expectVersion(Self.version)
            index = LogIndex(try r.u64())
            term = Term(try r.u64())
            confState = ConfState(try StoredConfState(decoding: try r.take(Int(try r.u16()))))
            staged = String(decoding: try r.take(Int(try r.u16())), as: UTF8.self)
            guard PartitionStateMachine.isStagingName(staged) else { throw DecodeFailure("staged name \(staged)") }
            oldRepositories = []
            for _ in 0..<Int(try r.u32()) {
                let path = try r.take(Int(try r.u16()))
                oldRepositories.append(
                    try DecodeFailure.validating { () throws(IdentityError) in try RelativePath(bytes: path) })
            }
            try r.expectEnd()
        } catch let error as DecodeFailure {
            throw StateMachineError("the install record is damaged: \(error.reason)")
        } catch {
            throw StateMachineError("the install record is damaged: \(error)")
        }
    }
}

extension PartitionStateMachine {
    /// Where prepared snapshots (leader) live, below the replica's directory.
    public var preparedSnapshotsDirectory: String { directory + "/snapshots" }
    /// Where received snapshots (follower) are staged, below the replica's directory (the
    /// same file system as the repositories, so install renames).
    public var snapshotStagingDirectory: String { directory + "/snapshot-staging" }

    /// A staged snapshot's directory name: one path component, no dots.
    static func isStagingName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 128
            && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }
    }

    /// Makes a point-in-time view of the partition at its applied index in
    /// `snapshots/<index>-<id>`: repositories' packs and loose objects hard-linked, every
    /// other file copied, plus the `state` file. Apply waits only for this pass.
    public func prepareSnapshot(id: UInt64) throws(StateMachineError) -> PreparedPartitionSnapshot {
        guard let registry, let partition else {
            throw StateMachineError("a partition without a registry cannot make snapshots")
        }
        let started = MonotonicClock.system.nanoseconds
        do {
            try RepositoryFiles(path: directory).makeLayout(["snapshots"])
            return try view.withShared { () throws -> PreparedPartitionSnapshot in
                let (index, values) = state.withLock { ($0.applied, $0.values) }
                let root = preparedSnapshotsDirectory + "/\(index.rawValue)-\(String(id, radix: 16))"
                if FileSystem.exists(root) { try FileSystem.removeTree(root) }
                try FileSystem.makeDirectory(root)
                var items: [SnapshotItem] = []
                var total: UInt64 = 0
                var repositories: [PartitionSnapshotState.Repository] = []
                let reposRoot = root + "/" + PartitionSnapshotState.repositoriesDirectory
                try FileSystem.makeDirectory(reposRoot)
                items.append(
                    SnapshotItem(
                        path: try RelativePath(PartitionSnapshotState.repositoriesDirectory), mode: 0o755,
                        kind: .directory))
                for path in try registry.repositories(of: partition).sorted() {
                    let source = storageRoot + "/" + path.rawValue
                    guard FileSystem.exists(source) else { continue }
                    var pool: RelativePath?
                    if let alternates = try FileSystem.readFileIfExists(source + "/objects/info/alternates") {
                        pool = try poolPath(alternates, of: path)
                    }
                    repositories.append(.init(path: path, pool: pool))
                    // The repository's parent directories, then its tree.
                    var parent = PartitionSnapshotState.repositoriesDirectory
                    for component in path.rawValue.split(separator: "/") {
                        parent += "/" + component
                        if !FileSystem.exists(root + "/" + parent) {
                            try FileSystem.makeDirectory(root + "/" + parent)
                            items.append(SnapshotItem(path: try RelativePath(parent), mode: 0o755, kind: .directory))
                        }
                    }
                    try copyTree(
                        from: source, to: root + "/" + parent, relative: parent, items: &items, total: &total)
                }
                let stateBytes = PartitionSnapshotState(values: values, repositories: repositories).encoded()
                let statePath = root + "/" + PartitionSnapshotState.fileName
                try RepositoryFiles(path: root).writeFile(PartitionSnapshotState.fileName, stateBytes)
                items.append(
                    SnapshotItem(
                        path: try RelativePath(PartitionSnapshotState.fileName), mode: 0o644,
                        kind: .file(size: UInt64(stateBytes.count), source: statePath)))
                total += UInt64(stateBytes.count)
                return PreparedPartitionSnapshot(
                    index: index, directory: root, items: items, totalBytes: total,
                    linkNanoseconds: MonotonicClock.system.nanoseconds - started)
            }
        } catch let error as StateMachineError {
            throw error
        } catch {
            throw StateMachineError("preparing a snapshot of \(directory): \(error)")
        }
    }

    /// The pool's path relative to the storage root, from an `alternates` file this storage wrote.
    private func poolPath(_ alternates: [UInt8], of path: RelativePath) throws -> RelativePath {
        var text = String(decoding: alternates, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        guard text.hasPrefix(storageRoot + "/"), text.hasSuffix("/objects"), !text.contains("\n") else {
            throw StateMachineError("\(path): its alternates file names \(text), not a pool of this storage")
        }
        return try RelativePath(String(text.dropFirst(storageRoot.count + 1).dropLast("/objects".count)))
    }

    /// Copies the tree at `source` into `target` (which exists): immutable object files
    /// hard-linked, the rest copied; `alternates` left out (the receiver writes its own).
    private func copyTree(
        from source: String, to target: String, relative: String, items: inout [SnapshotItem], total: inout UInt64
    ) throws {
        for name in try FileSystem.list(source) {
            let from = source + "/" + name
            let to = target + "/" + name
            let rel = relative + "/" + name
            let status = try FileSystem.status(of: from)
            switch status.kind {
            case .directory:
                try FileSystem.makeDirectory(to)
                items.append(SnapshotItem(path: try RelativePath(rel), mode: status.mode, kind: .directory))
                try copyTree(from: from, to: to, relative: rel, items: &items, total: &total)
            case .regularFile:
                if rel.hasSuffix("/objects/info/alternates") || name.hasSuffix(".lock") { continue }
                if Self.isImmutable(rel) {
                    try FileSystem.link(from, to: to)
                } else {
                    // A private copy: no lock file or rename needed (nothing else writes here,
                    // and a crash discards the whole view).
                    let bytes = try FileSystem.readFileIfExists(from) ?? []
                    let file = try DiskFile.open(to, .createNew)
                    let written = bytes.withUnsafeBytes { raw in
                        Result { () throws(IOError) in try file.write(toAbsoluteOffset: 0, raw) }
                    }
                    try? file.close()
                    try written.get()
                }
                let size = try FileSystem.status(of: to).size
                items.append(
                    SnapshotItem(path: try RelativePath(rel), mode: status.mode, kind: .file(size: size, source: to)))
                total += size
            case .symbolicLink, .other:
                throw StateMachineError("\(from) is not a regular file or directory; a snapshot carries only those")
            }
        }
    }

    /// Files git never rewrites in place: packs and their companions, loose objects.
    static func isImmutable(_ path: String) -> Bool {
        let parts = path.split(separator: "/")
        guard let objects = parts.lastIndex(of: "objects"), objects + 2 == parts.count - 1 || objects + 2 == parts.count
        else { return false }
        let rest = parts[(objects + 1)...]
        if rest.count == 2 && rest.first == "pack" {
            return [".pack", ".idx", ".rev", ".bitmap"].contains { rest.last!.hasSuffix($0) }
        }
        guard rest.count == 2, let directory = rest.first else { return false }
        return directory.count == 2 && directory.allSatisfy { $0.isHexDigit }
    }

    /// Removes every prepared snapshot but those named in `keep`.
    public func removePreparedSnapshots(keeping keep: Set<String> = []) {
        guard let names = try? FileSystem.list(preparedSnapshotsDirectory) else { return }
        for name in names where !keep.contains(preparedSnapshotsDirectory + "/" + name) {
            try? FileSystem.removeTree(preparedSnapshotsDirectory + "/" + name)
        }
    }

    // MARK: - Install

    /// Installs the snapshot staged in `snapshot-staging/<name>` (`snapshot.data` is the
    /// name), received and verified by the snapshot service, at `snapshot.metadata.index`.
    ///
    /// 1. The install record (index, term, configuration, staged name, the repositories the
    ///    partition has now) is made durable: from here on a restart finishes the install.
    /// 2. Each repository of the partition moves aside and the snapshot's takes its place
    ///    (renames), then their directories are made durable.
    /// 3. The registry is brought to the snapshot's repositories.
    /// 4. A checkpoint record of the snapshot's index and values is made durable.
    ///
    /// The record stays until `finishRestore` (the host made the log reset durable).
    /// Readers wait for the whole install (the view lock), so none sees a mix.
    public func restore(_ snapshot: Snapshot) throws(StateMachineError) {
        let name = String(decoding: snapshot.data, as: UTF8.self)
        guard Self.isStagingName(name), FileSystem.exists(snapshotStagingDirectory + "/" + name) else {
            throw StateMachineError("no staged snapshot named \(name) in \(snapshotStagingDirectory)")
        }
        guard let registry, let partition else {
            throw StateMachineError("a partition without a registry cannot install snapshots")
        }
        // Everything that can refuse the snapshot is checked before the install record:
        // after it, a restart finishes the install whatever happens, so it must not fail.
        try validateStaged(snapshotStagingDirectory + "/" + name, registry: registry, partition: partition)
        try view.withExclusive { () throws(StateMachineError) in
            do {
                let intent = InstallIntent(
                    index: snapshot.metadata.index, term: snapshot.metadata.term,
                    confState: snapshot.metadata.confState, staged: name,
                    oldRepositories: try registry.repositories(of: partition).sorted())
                try RepositoryFiles(path: directory).writeFile(InstallIntent.fileName, intent.encoded(), durable: true)
                try DiskFile.syncDirectory(directory)
                CrashPoints.reached()
                try rollForward(intent)
            } catch let error as StateMachineError {
                throw error
            } catch {
                throw StateMachineError("installing snapshot \(snapshot.metadata.index) in \(directory): \(error)")
            }
        }
    }

    /// Refuses a staged snapshot that could not be installed whole: no or a damaged state
    /// file, anything but `repositories/` and `state` at its top, a repository or pool
    /// another partition holds, a pool that is not one of its repositories, a repository
    /// whose path leads through a link on this storage.
    private func validateStaged(
        _ staged: String, registry: any RepositoryRegistry, partition: PartitionKey
    )
        throws(StateMachineError)
    {
        do {
            let top = try FileSystem.list(staged)
            guard
                top.allSatisfy({
                    [PartitionSnapshotState.fileName, PartitionSnapshotState.repositoriesDirectory].contains($0)
                })
            else { throw StateMachineError("the staged snapshot holds \(top), not only a state file and repositories") }
            guard let bytes = try FileSystem.readFileIfExists(staged + "/" + PartitionSnapshotState.fileName) else {
                throw StateMachineError("the staged snapshot has no state file")
            }
            let snapshotState = try PartitionSnapshotState(decoding: bytes)
            let paths = Set(snapshotState.repositories.map(\.path))
            guard paths.count == snapshotState.repositories.count else {
                throw StateMachineError("the snapshot lists a repository twice")
            }
            for repository in snapshotState.repositories {
                if let owner = try registry.partition(of: repository.path), owner != partition {
                    throw StateMachineError("the snapshot's \(repository.path) belongs to partition \(owner) here")
                }
                if let pool = repository.pool, !paths.contains(pool) {
                    throw StateMachineError(
                        "the snapshot's \(repository.path) borrows from \(pool), which it does not hold")
                }
                // No repository may sit below another (one would move with the other).
                for other in paths
                where other != repository.path && repository.path.rawValue.hasPrefix(other.rawValue + "/") {
                    throw StateMachineError("the snapshot's \(repository.path) lies inside \(other)")
                }
                // Its directories on this storage must be real directories, not links.
                var prefix = storageRoot
                for component in repository.path.rawValue.split(separator: "/").dropLast() {
                    prefix += "/" + component
                    if let kind = try FileSystem.kind(of: prefix, followSymlinks: false), kind != .directory {
                        throw StateMachineError("\(prefix) is not a directory; \(repository.path) cannot be installed")
                    }
                }
            }
        } catch let error as StateMachineError {
            throw error
        } catch {
            throw StateMachineError("checking the staged snapshot: \(error)")
        }
    }

    /// The install whose log reset is not known durable yet (read at open; a restart
    /// finished its file work).
    public var pendingRestore: SnapshotMetadata? {
        state.withLock { $0.pendingInstall }
    }

    /// The host made the snapshot's log reset durable: the install record and what was
    /// staged (the partition's old repositories among it) go.
    public func finishRestore(_ metadata: SnapshotMetadata) {
        let staged: String? = state.withLock { s in
            guard s.pendingInstall?.index == metadata.index else { return nil }
            s.pendingInstall = nil
            defer { s.pendingStaged = nil }
            return s.pendingStaged
        }
        guard let staged else { return }
        do {
            try FileSystem.removeFile(directory + "/" + InstallIntent.fileName)
            try DiskFile.syncDirectory(directory)
        } catch {
            // The record stays: the next start finishes again (idempotent) and removes it.
            return
        }
        // The partition's old repositories are in there: removed off the apply worker (a
        // large tree takes a while); a restart sweeps what is left.
        let trash = snapshotStagingDirectory + "/trash-" + staged
        guard (try? FileSystem.rename(snapshotStagingDirectory + "/" + staged, to: trash)) != nil else { return }
        Self.cleaner.post { try? FileSystem.removeTree(trash) }
    }

    /// Removes finished installs' leftovers in the background.
    static let cleaner = BackgroundThread(name: "raftd-cleanup")

    /// Steps 2 to 4 of an install; each is idempotent, so a restart repeats them.
    func rollForward(_ intent: InstallIntent) throws {
        guard let registry, let partition else { return }
        let staged = snapshotStagingDirectory + "/" + intent.staged
        let snapshotState = try PartitionSnapshotState(
            decoding: try FileSystem.readFileIfExists(staged + "/" + PartitionSnapshotState.fileName) ?? [])
        let fresh = Set(snapshotState.repositories.map(\.path))
        let all = Set(intent.oldRepositories).union(fresh).sorted()
        let aside = staged + "/old"
        if !FileSystem.exists(aside) { try FileSystem.makeDirectory(aside) }
        var parents: Set<String> = [aside]
        for (k, path) in all.enumerated() {
            let live = storageRoot + "/" + path.rawValue
            let incoming = staged + "/" + PartitionSnapshotState.repositoriesDirectory + "/" + path.rawValue
            let parent = String(live[..<live.lastIndex(of: "/")!])
            if fresh.contains(path) {
                // Not moved in yet while the staged copy is still there.
                guard FileSystem.exists(incoming) else { continue }
                if FileSystem.exists(live) {
                    try FileSystem.rename(live, to: aside + "/\(k)")
                    CrashPoints.reached()
                }
                try RepositoryFiles(path: parent).makeLayout([])
                try FileSystem.rename(incoming, to: live)
                CrashPoints.reached()
                parents.insert(parent)
            } else if FileSystem.exists(live) {
                try FileSystem.rename(live, to: aside + "/\(k)")
                CrashPoints.reached()
                parents.insert(parent)
            }
        }
        for repository in snapshotState.repositories {
            let files = RepositoryFiles(path: storageRoot + "/" + repository.path.rawValue)
            try files.setAlternates(pool: repository.pool.map { storageRoot + "/" + $0.rawValue })
            if repository.pool != nil {
                let info = files.path + "/objects/info"
                try DiskFile.syncDirectory(info)
                let alternates = try DiskFile.open(info + "/alternates", .readOnly)
                defer { try? alternates.close() }
                try alternates.sync()
            }
        }
        for parent in parents.sorted() { try DiskFile.syncDirectory(parent) }
        CrashPoints.reached()
        for path in intent.oldRepositories where !fresh.contains(path) {
            try registry.unregister(path, from: partition)
        }
        for path in fresh.sorted() { try registry.register(path, in: partition) }
        CrashPoints.reached()
        try writeInstalledCheckpoint(index: intent.index, values: snapshotState.values)
        CrashPoints.reached()
        state.withLock { s in
            s.pendingInstall = SnapshotMetadata(index: intent.index, term: intent.term, confState: intent.confState)
            s.pendingStaged = intent.staged
        }
    }

    /// Records the installed snapshot as the checkpoint (in the free slot), durably, and
    /// makes it the state: what apply touched before is superseded.
    private func writeInstalledCheckpoint(index: LogIndex, values: [String: [UInt8]]) throws {
        try checkpointer?.exclusively { () throws(IOError) in
            try writeCheckpointRecord(index: index, values: values)
        } ?? writeCheckpointRecord(index: index, values: values)
    }

    private func writeCheckpointRecord(index: LogIndex, values: [String: [UInt8]]) throws(IOError) {
        let (slot, sequence) = state.withLock { ($0.checkpointSlot, $0.checkpointSequence) }
        let free = slot.map { ($0 + 1) % CheckpointRecord.slots } ?? 0
        let record = CheckpointRecord(sequence: sequence + 1, applied: index, values: Self.encodeValues(values))
        let encoded = record.encoded()
        let path = directory + "/" + CheckpointRecord.slotName(free)
        let created = !FileSystem.exists(path)
        let file = try DiskFile.open(path, .createReadWrite)
        let written = encoded.withUnsafeBytes { raw in
            Result { () throws(IOError) in
                try file.write(toAbsoluteOffset: 0, raw)
                try file.sync()
            }
        }
        try? file.close()
        try written.get()
        if created { try DiskFile.syncDirectory(directory) }
        // What apply wrote before is replaced by the snapshot's state, which is durable.
        touched.move(into: TouchedPaths())
        state.withLock { s in
            s.applied = index
            s.values = values
            s.checkpointed = index
            s.checkpointedAtNanoseconds = MonotonicClock.system.nanoseconds
            s.checkpointSlot = free
            s.checkpointSequence = sequence + 1
        }
    }
}

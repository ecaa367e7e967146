/// What transactions proposed but not yet applied will change, as far as verification
/// looks: which repositories exist, reference values, pool links. The leader verifies a
/// new transaction against the applied state (the repositories on disk) with these on top,
/// so two conflicting transactions can never both enter the log.
public struct PartitionEffects: Sendable, Equatable {
    /// Repositories created (true) or removed (false).
    var exists: [RelativePath: Bool] = [:]
    /// Reference values after the transaction; zero: deleted. A removed or re-created
    /// repository starts empty (`cleared`).
    var references: [RelativePath: [RefName: ObjectID]] = [:]
    var cleared: Set<RelativePath> = []
    /// Pool links after the transaction (nil: unlinked).
    var links: [RelativePath: RelativePath?] = [:]
    /// Objects the transaction's packs add, per repository.
    var objects: [RelativePath: Set<ObjectID>] = [:]

    public init() {}

    /// Layers `later` on top of this.
    mutating func merge(_ later: PartitionEffects) {
        for (path, exists) in later.exists { self.exists[path] = exists }
        for path in later.cleared {
            cleared.insert(path)
            references[path] = [:]
            objects[path] = []
            links[path] = .some(nil)
        }
        for (path, values) in later.references { references[path, default: [:]].merge(values) { $1 } }
        for (path, link) in later.links { links[path] = link }
        for (path, added) in later.objects { objects[path, default: []].formUnion(added) }
    }
}

/// Checks a transaction on the leader before it is proposed (Gitaly's transaction manager
/// does the same before it appends): expected old reference values, repository existence,
/// object existence, object pool rules, and paths that stay inside the storage root. Reads
/// git's files directly; no `git` process (packs are indexed and checked before this, by
/// `PackValidator`).
///
/// `pending` are the effects of transactions proposed and not yet applied, oldest first.
/// Returns this transaction's effects, for the next verification to build on.
public struct PartitionVerifier {
    public let storageRoot: String
    /// The partition verifying and the storage's registry: an operation on a repository
    /// another partition holds is refused (nil: no registry, as in tests of verification alone).
    public let partition: PartitionKey?
    public let registry: (any RepositoryRegistry)?

    /// A repository path relative to the storage root names a pool when it starts with this
    /// (GitLab's layout: `@pools/ab/cd/<hash>.git`). Only `createObjectPool` makes one.
    public static let poolPrefix = "@pools/"

    public init(storageRoot: String, partition: PartitionKey? = nil, registry: (any RepositoryRegistry)? = nil) {
        self.storageRoot = storageRoot
        self.partition = partition
        self.registry = registry
    }

    /// `packObjects`: for each `attachPack` of the transaction (in order), the object names
    /// its validated index holds.
    public func verify(
        _ transaction: PartitionTransaction, pending: [PartitionEffects], packObjects: [[ObjectID]] = []
    ) throws(PartitionError) -> PartitionEffects {
        var view = PartitionEffects()
        for effects in pending { view.merge(effects) }
        var mine = PartitionEffects()
        var packs = packObjects.makeIterator()
        // One object database per repository for the whole transaction: its pack indexes
        // are read once, however many references point into them.
        var databases: [String: ObjectDatabase] = [:]
        // Each repository's packed-refs parsed once (it can hold thousands of references).
        var packed: [RelativePath: PackedRefs] = [:]
        for op in transaction.operations {
            // Each operation sees the ones before it in the same transaction.
            var current = view
            current.merge(mine)
            for path in op.repositories { try requireOwned(path, in: current, creating: op.creates(path)) }
            switch op {
            case .createRepository(let path, _):
                guard !path.rawValue.hasPrefix(Self.poolPrefix) else {
                    throw .objectPoolRule("\(path) is under \(Self.poolPrefix): create it as an object pool")
                }
                try create(path, in: current, into: &mine)
            case .createObjectPool(let path):
                guard path.rawValue.hasPrefix(Self.poolPrefix) else {
                    throw .objectPoolRule("an object pool lives under \(Self.poolPrefix), not at \(path)")
                }
                try create(path, in: current, into: &mine)
            case .removeRepository(let path):
                try requireExists(path, in: current)
                mine.exists[path] = false
                mine.cleared.insert(path)
                mine.references[path] = nil
                mine.objects[path] = nil
                mine.links[path] = nil
            case .updateReferences(let path, let updates):
                try requireExists(path, in: current)
                var seen = Set<RefName>()
                for update in updates {
                    guard seen.insert(update.name).inserted else {
                        throw .invalidOperation("reference \(update.name) updated twice in one transaction")
                    }
                    let actual = try value(of: update.name, in: path, current, &packed)
                    guard actual == update.old else {
                        throw .referenceStateMismatch(
                            repository: path.rawValue, reference: update.name.rawValue, expected: update.old,
                            actual: actual)
                    }
                    if !update.isDeletion {
                        try requireObject(update.new, in: path, current, &databases)
                    }
                    mine.references[path, default: [:]][update.name] = update.new
                }
                var after = current
                after.merge(mine)
                for update in updates where !update.isDeletion {
                    try requireNoNameConflict(update.name, in: path, after, &packed)
                }
            case .setHead(let path, _):
                try requireExists(path, in: current)
            case .attachPack(let path, _):
                try requireExists(path, in: current)
                guard let objects = packs.next() else {
                    preconditionFailure("verify: no validated index for a pack of \(path)")
                }
                mine.objects[path, default: []].formUnion(objects)
            case .linkToPool(let repository, let pool):
                try requireExists(repository, in: current)
                try requireExists(pool, in: current)
                guard repository != pool else { throw .objectPoolRule("\(repository) cannot borrow from itself") }
                guard pool.rawValue.hasPrefix(Self.poolPrefix) else {
                    throw .objectPoolRule("\(pool) is not an object pool (pools live under \(Self.poolPrefix))")
                }
                guard !repository.rawValue.hasPrefix(Self.poolPrefix) else {
                    throw .objectPoolRule("\(repository) is a pool: pools borrow from nothing (no chains)")
                }
                mine.links[repository] = .some(pool)
            case .unlinkFromPool(let path):
                try requireExists(path, in: current)
                mine.links[path] = .some(nil)
            case .adoptRepository(let path):
                guard view.exists[path] == nil, try exists(path, in: current) else {
                    throw .wrongPartition(repository: path.rawValue, reason: "there is no repository to adopt")
                }
                mine.exists[path] = true
            case .setValue, .deleteValue:
                break
            }
        }
        return mine
    }

    // MARK: - State as of the applied index plus the pending transactions

    /// A repository this partition holds, or (`creating`) one nobody holds; a pending
    /// creation in this partition counts as held.
    private func requireOwned(
        _ path: RelativePath, in view: PartitionEffects, creating: Bool
    ) throws(PartitionError) {
        guard let registry, let partition else { return }
        let holder = try registry.partition(of: path)
        if let holder, holder != partition {
            throw .wrongPartition(
                repository: path.rawValue, reason: "it belongs to partition \(holder), not \(partition)")
        }
        if holder == nil && !creating && view.exists[path] != true {
            throw .wrongPartition(repository: path.rawValue, reason: "no partition holds it (create or adopt it first)")
        }
    }

    private func directory(_ path: RelativePath) -> String { storageRoot + "/" + path.rawValue }

    private func exists(_ path: RelativePath, in view: PartitionEffects) throws(PartitionError) -> Bool {
        if let known = view.exists[path] { return known }
        try requireInsideRoot(path)
        return FileSystem.exists(directory(path) + "/HEAD")
    }

    private func create(
        _ path: RelativePath, in view: PartitionEffects, into mine: inout PartitionEffects
    ) throws(PartitionError) {
        guard try !exists(path, in: view) else { throw .repositoryExists(path.rawValue) }
        try requireInsideRoot(path)
        if view.exists[path] == nil, FileSystem.exists(directory(path)) {
            // A directory that is not a repository: leftovers that apply would mix with.
            throw .repositoryExists("\(path) (a directory that is not a repository is in the way)")
        }
        mine.exists[path] = true
        mine.cleared.insert(path)
    }

    private func requireExists(_ path: RelativePath, in view: PartitionEffects) throws(PartitionError) {
        guard try exists(path, in: view) else { throw .repositoryNotFound(path.rawValue) }
    }

    private func value(
        of name: RefName, in path: RelativePath, _ view: PartitionEffects,
        _ packed: inout [RelativePath: PackedRefs]
    ) throws(PartitionError) -> ObjectID {
        if let pending = view.references[path]?[name] { return pending }
        if view.cleared.contains(path) { return .zero }
        let files = RepositoryFiles(path: directory(path))
        if packed[path] == nil { packed[path] = try storage { () throws(IOError) in try files.packedReferences() } }
        let known = packed[path]
        return try storage { () throws(IOError) in try files.reference(name, packed: known) } ?? .zero
    }

    private func requireObject(
        _ oid: ObjectID, in path: RelativePath, _ view: PartitionEffects, _ databases: inout [String: ObjectDatabase]
    ) throws(PartitionError) {
        if view.objects[path]?.contains(oid) == true { return }
        let pool: RelativePath?? = view.links[path]
        if let linked = pool ?? nil, view.objects[linked]?.contains(oid) == true { return }
        func database(_ repository: RelativePath) throws(PartitionError) -> ObjectDatabase {
            let key = directory(repository)
            if let known = databases[key] { return known }
            let opened = try ObjectDatabase(repository: key)
            databases[key] = opened
            return opened
        }
        if !view.cleared.contains(path), try database(path).contains(oid) { return }
        if let linked = pool ?? nil, try database(linked).contains(oid) { return }
        throw .objectMissing(repository: path.rawValue, object: oid.hex)
    }

    /// git keeps references as files, so `refs/heads/a` and `refs/heads/a/b` cannot both
    /// exist: a name one of whose leading parts is a reference, or that leads another
    /// reference, is refused (as git refuses it), counting this transaction and the
    /// pending ones. Without this, apply would meet a file where it needs a directory and
    /// stop the replica on every node.
    private func requireNoNameConflict(
        _ name: RefName, in path: RelativePath, _ view: PartitionEffects,
        _ packed: inout [RelativePath: PackedRefs]
    ) throws(PartitionError) {
        let pending = view.references[path] ?? [:]
        let cleared = view.cleared.contains(path)
        let files = RepositoryFiles(path: directory(path))
        if packed[path] == nil { packed[path] = try storage { () throws(IOError) in try files.packedReferences() } }
        let packedRefs = packed[path]!
        func conflict(_ other: String) -> PartitionError {
            .invalidRefName(
                name.rawValue, reason: "it conflicts with the reference \(other) (one names a directory of the other)")
        }
        // Leading parts: refs/heads/a for refs/heads/a/b.
        let parts = name.rawValue.split(separator: "/")
        for count in 2..<parts.count {
            let prefix = parts[0..<count].joined(separator: "/")
            guard let ref = try? RefName(prefix) else { continue }
            if let value = pending[ref] {
                if !value.isZero { throw conflict(prefix) }
                continue
            }
            if cleared { continue }
            let file = files.path + "/" + prefix
            if try kind(file) == .regularFile
                || packedRefs.value(ref) != nil
            {
                throw conflict(prefix)
            }
        }
        // References below it: refs/heads/a/b for refs/heads/a.
        let below = name.rawValue + "/"
        if let other = pending.first(where: { $0.key.rawValue.hasPrefix(below) && !$0.value.isZero }) {
            throw conflict(other.key.rawValue)
        }
        if cleared { return }
        let deleted = { (other: String) -> Bool in
            guard let ref = try? RefName(other) else { return false }
            return pending[ref]?.isZero == true
        }
        if packedRefs.hasName(withPrefix: Array(below.utf8), excluding: deleted) { throw conflict(below + "…") }
        var directories = [name.rawValue]
        while let relative = directories.popLast() {
            let full = files.path + "/" + relative
            guard try kind(full) == .directory else { continue }
            for entry in try storage({ () throws(IOError) in try FileSystem.list(full) })
            where !entry.hasSuffix(".lock") {
                let child = relative + "/" + entry
                switch try kind(files.path + "/" + child) {
                case .directory: directories.append(child)
                case .regularFile: if !deleted(child) { throw conflict(child) }
                default: continue
                }
            }
        }
    }

    /// What is at `path`; nil when nothing is, also when a leading part is a file.
    private func kind(_ path: String) throws(PartitionError) -> FileSystem.FileKind? {
        try storage { () throws(IOError) in try FileSystem.kind(of: path, followSymlinks: false) }
    }

    /// The repository's directory, where it exists in part, does not leave the storage root
    /// through a symbolic link.
    private func requireInsideRoot(_ path: RelativePath) throws(PartitionError) {
        let root = try storage { () throws(IOError) in try FileSystem.canonicalPath(storageRoot) }
        var existing = directory(path)
        while !FileSystem.exists(existing), let slash = existing.lastIndex(of: "/") {
            existing = String(existing[..<slash])
        }
        let resolved = try storage { () throws(IOError) in try FileSystem.canonicalPath(existing) }
        guard resolved == root || resolved.hasPrefix(root + "/") else {
            throw .invalidOperation("\(path) leaves the storage root through a symbolic link (to \(resolved))")
        }
    }
}

extension PartitionOperation {
    /// The repositories the operation touches.
    var repositories: [RelativePath] {
        switch self {
        case .createRepository(let p, _), .removeRepository(let p), .updateReferences(let p, _), .setHead(let p, _),
            .attachPack(let p, _), .createObjectPool(let p), .unlinkFromPool(let p), .adoptRepository(let p):
            return [p]
        case .linkToPool(let repository, let pool): return [repository, pool]
        case .setValue, .deleteValue: return []
        }
    }

    /// Whether the operation brings `path` into the partition (it may be held by nobody yet).
    func creates(_ path: RelativePath) -> Bool {
        switch self {
        case .createRepository(let p, _), .createObjectPool(let p), .adoptRepository(let p): return p == path
        default: return false
        }
    }
}

/// The engine's directories inside one storage root:
///
/// ```
/// <storage>/
///   +raft/
///     database/     LMDB metadata (MetadataStore)
///     wal/          the shared multi-group log
///     partitions/<h0h1>/<h2h3>/<authority>_<partitionID>/   per-replica state
///     staging/      snapshots being received
///     tmp/          scratch space, emptied on start by its owner
/// ```
///
/// `create` builds it on a storage's first start; every later start runs `validate`, which
/// reports a missing or wrong piece and never rebuilds it: a storage whose `wal/` vanished
/// has lost data, and recreating an empty one would hide that.
public struct StorageLayout: Sendable, Equatable {
    /// The storage root, as configured.
    public let root: String

    /// The engine's directory names under `+raft/`. `database` comes last: `create` makes
    /// it after the others are durable, so its presence means the layout was complete.
    public static let subdirectories = ["wal", "partitions", "staging", "tmp", "database"]

    /// The engine's top-level directory; `RelativePath` refuses repositories under it.
    public static let raftDirectoryName = RelativePath.reservedTopLevel

    public init(root: String) {
        precondition(!root.isEmpty, "empty storage root")
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    public var raftDirectory: String { RelativePath.join(root, Self.raftDirectoryName) }
    public var databaseDirectory: String { raftDirectory + "/database" }
    public var walDirectory: String { raftDirectory + "/wal" }
    public var partitionsDirectory: String { raftDirectory + "/partitions" }
    public var stagingDirectory: String { raftDirectory + "/staging" }

    /// The directory of this storage's replica of `key`:
    /// `partitions/<h0h1>/<h2h3>/<authority>_<partitionID>`, where h0…h3 are the first hex
    /// digits of the SHA-256 of the key's byte form (thousands of partitions spread over
    /// 65,536 directories instead of one).
    public func partitionDirectory(_ key: PartitionKey) -> String {
        let hex = SHA256.hex(SHA256.hash(key.encoded))
        let h = Array(hex.prefix(4))
        return
            "\(partitionsDirectory)/\(String(h[0...1]))/\(String(h[2...3]))/\(key.authority)_\(key.partitionID.rawValue)"
    }
    public var tmpDirectory: String { raftDirectory + "/tmp" }
    /// The file whose flock(2) marks the storage as in use by one process.
    public var lockFile: String { raftDirectory + "/lock" }

    /// Whether the storage has been initialized (its `+raft/database` exists, whatever it is).
    public func isInitialized() throws(MetadataError) -> Bool {
        do {
            return try FileSystem.kind(of: databaseDirectory, followSymlinks: false) != nil
        } catch {
            throw .io(error)
        }
    }

    /// Validates an initialized storage, or creates the layout of a new one when
    /// `createIfMissing` is set. The root itself is never created: a missing root usually
    /// means a disk that is not mounted, and creating it would fill the system disk.
    public func prepare(createIfMissing: Bool) throws(MetadataError) {
        try checkRoot()
        if try isInitialized() {
            try validate()
        } else if createIfMissing {
            try create()
        } else {
            throw .notInitialized(storageRoot: root)
        }
    }

    /// Creates the layout on a storage's first start, making each new directory entry
    /// durable (fsync of its parent) before the next step. Refuses a storage that is already
    /// initialized. Directories left by an interrupted first start are kept if they are
    /// directories; `database` is created last so an interrupted start is never mistaken
    /// for a complete one.
    public func create() throws(MetadataError) {
        try checkRoot()
        guard try !isInitialized() else {
            throw .layoutInvalid(path: databaseDirectory, problem: "already exists: the storage is initialized")
        }
        try makeDirectory(raftDirectory)
        try sync(root)
        for name in Self.subdirectories where name != "database" {
            try makeDirectory(raftDirectory + "/" + name)
        }
        try sync(raftDirectory)
        try makeDirectory(databaseDirectory)
        try sync(raftDirectory)
    }

    /// Checks that every directory of the layout is present and is a directory, and that
    /// none is a symbolic link leading outside the storage root (a link inside it, e.g. to
    /// put the WAL on another directory of the same storage, is fine).
    public func validate() throws(MetadataError) {
        try checkRoot()
        let canonicalRoot: String
        do {
            canonicalRoot = try FileSystem.canonicalPath(root)
        } catch {
            throw .io(error)
        }
        let paths = [raftDirectory] + Self.subdirectories.map { raftDirectory + "/" + $0 }
        for path in paths {
            let kind: FileSystem.FileKind?
            do {
                kind = try FileSystem.kind(of: path, followSymlinks: false)
            } catch {
                throw .io(error)
            }
            switch kind {
            case nil:
                throw .layoutInvalid(
                    path: path,
                    problem: "missing from an initialized storage; raftd does not recreate parts of an existing "
                        + "storage because data would be lost silently: restore the directory from a backup, or "
                        + "remove the storage from the cluster and add it again")
            case .directory:
                continue
            case .symbolicLink:
                try checkLink(path, canonicalRoot: canonicalRoot)
            case .regularFile, .other:
                throw .layoutInvalid(path: path, problem: "is not a directory")
            }
        }
    }

    /// The directory of one replica's own state:
    /// `+raft/partitions/<h0h1>/<h2h3>/<authority>_<partitionID>`, where `h0h1` and `h2h3`
    /// are the two most significant bytes, in hexadecimal, of `partitionHash(key)`. The
    /// two hashed levels keep every directory small with thousands of replicas.
    public func replicaDirectory(for key: PartitionKey) -> String {
        let hash = Self.partitionHash(key)
        let first = Self.hex(UInt8(truncatingIfNeeded: hash >> 56))
        let second = Self.hex(UInt8(truncatingIfNeeded: hash >> 48))
        return "\(partitionsDirectory)/\(first)/\(second)/\(key.authority)_\(key.partitionID)"
    }

    /// FNV-1a 64 of the partition key's byte form (`PartitionKey.encoded`). Chosen because
    /// it is tiny, has no dependency, and is fully specified, so the directory of a replica
    /// never changes between versions or machines. It only spreads directories; nothing
    /// relies on it resisting collisions (the last level names the key in full).
    public static func partitionHash(_ key: PartitionKey) -> UInt64 { fnv1a64(key.encoded) }

    /// FNV-1a, 64-bit: offset basis 0xcbf29ce484222325, prime 0x100000001b3.
    static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }

    private func checkRoot() throws(MetadataError) {
        let kind: FileSystem.FileKind?
        do {
            kind = try FileSystem.kind(of: root, followSymlinks: true)
        } catch {
            throw .io(error)
        }
        guard kind == .directory else {
            throw .layoutInvalid(
                path: root,
                problem: kind == nil
                    ? "the storage root does not exist (is the disk mounted?); raftd never creates it"
                    : "the storage root is not a directory")
        }
    }

    private func checkLink(_ path: String, canonicalRoot: String) throws(MetadataError) {
        let target: String
        do {
            guard try FileSystem.kind(of: path, followSymlinks: true) == .directory else {
                throw MetadataError.layoutInvalid(
                    path: path, problem: "is a symbolic link that does not lead to a directory")
            }
            target = try FileSystem.canonicalPath(path)
        } catch let error as MetadataError {
            throw error
        } catch let error as IOError {
            throw .io(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
        guard RelativePath.isInside(target, root: canonicalRoot) else {
            throw .layoutInvalid(
                path: path, problem: "is a symbolic link to \(target), outside the storage root \(canonicalRoot)")
        }
    }

    /// mkdir that accepts an existing directory (left by an interrupted first start).
    private func makeDirectory(_ path: String) throws(MetadataError) {
        do {
            try FileSystem.makeDirectory(path, mode: 0o750)
        } catch  where error.kind == .alreadyExists {
            let kind: FileSystem.FileKind?
            do {
                kind = try FileSystem.kind(of: path, followSymlinks: false)
            } catch {
                throw .io(error)
            }
            guard kind == .directory else { throw .layoutInvalid(path: path, problem: "exists and is not a directory") }
        } catch {
            throw .io(error)
        }
    }

    private func sync(_ directory: String) throws(MetadataError) {
        do {
            try DiskFile.syncDirectory(directory)
        } catch {
            throw .io(error)
        }
    }
}

import RaftConsensus
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The typed metadata of one storage, in LMDB under `<storage>/+raft/database/`: storage
/// identity, partition ID and group ID sequences, partition registry, relative paths,
/// routing table, configurations and applied indices. See docs/METADATA.md for the keys
/// and value encodings.
///
/// Every operation is one LMDB transaction: checks and changes happen together, and a
/// refused change (an error) leaves the database untouched. LMDB commits are durable
/// (fsync) when a call returns. Nothing is kept only in memory that matters after a crash:
/// the only in-memory state is the unused rest of the current partition ID lease, which a
/// crash skips. While a store is open it holds an exclusive lock on `+raft/lock`, so one
/// process at a time serves the storage.
public final class MetadataStore: Sendable {
    /// The schema this version writes and reads. Newer schemas are refused.
    public static let schemaVersion: UInt32 = 1

    /// How many partition IDs one lease reserves; the lease mark is written once per lease.
    public static let partitionIDLeaseSize: UInt64 = 1024

    public let layout: StorageLayout
    /// Holds the exclusive lock on `+raft/lock` until `close()` (or until the store is
    /// released). Never used after `open` otherwise.
    private nonisolated(unsafe) let lockFile: DiskFile
    let environment: LMDBEnvironment
    let databases: Databases
    let state: Mutex<State>

    /// The named databases.
    struct Databases: Sendable {
        /// Schema version, storage identity, sequences.
        let meta: LMDBDatabase
        /// Partition key -> PartitionRecord.
        let partitions: LMDBDatabase
        /// Group ID -> partition key (reverse index of `partitions`).
        let groups: LMDBDatabase
        /// Relative path -> partition key.
        let paths: LMDBDatabase
        /// Partition key ++ relative path -> empty (reverse index of `paths`).
        let partitionPaths: LMDBDatabase
        /// Partition key -> RouteEntry.
        let routes: LMDBDatabase
        /// Group ID -> StoredConfState.
        let confStates: LMDBDatabase
        /// Group ID -> applied index.
        let applied: LMDBDatabase

        static let names = [
            "meta", "partitions", "groups", "paths", "partition_paths", "routes", "conf_states", "applied",
        ]

        init(_ txn: LMDBWriteTransaction, create: Bool) throws(MetadataError) {
            var opened: [LMDBDatabase] = []
            for name in Self.names { opened.append(try txn.database(name, create: create)) }
            (meta, partitions, groups, paths) = (opened[0], opened[1], opened[2], opened[3])
            (partitionPaths, routes, confStates, applied) = (opened[4], opened[5], opened[6], opened[7])
        }

        var all: [LMDBDatabase] { [meta, partitions, groups, paths, partitionPaths, routes, confStates, applied] }
    }

    /// Keys of the `meta` database.
    enum MetaKey {
        static let schemaVersion = Array("schema_version".utf8)
        static let identity = Array("identity".utf8)
        /// The first partition ID not yet leased (exclusive end of every lease so far).
        static let partitionIDLease = Array("partition_id_lease".utf8)
        /// The next local group ID.
        static let nextGroupID = Array("group_id_next".utf8)
        /// The last boot value of the node serving this storage (absent before its first).
        static let nodeBoot = Array("node_boot".utf8)
    }

    struct State {
        var identity: StorageIdentity
        /// The next partition ID to hand out. Invariant: `nextPartitionID <= leaseEnd`.
        var nextPartitionID: UInt64
        /// The exclusive end of the current lease, as persisted.
        var leaseEnd: UInt64
    }

    private init(
        layout: StorageLayout, lockFile: DiskFile, environment: LMDBEnvironment, databases: Databases, state: State
    ) {
        self.layout = layout
        self.lockFile = lockFile
        self.environment = environment
        self.databases = databases
        self.state = Mutex(state)
    }

    /// Opens the metadata of the storage at `storageRoot`.
    ///
    /// On a storage's first start (with `createIfMissing`) it creates the layout and records
    /// the cluster ID, the owning node, the storage name and incarnation 1. On every later
    /// start it validates the layout and refuses a storage of another cluster, another
    /// name or another node, or one written with a newer schema.
    public static func open(
        storageRoot: String, clusterID: ClusterID, storageName: StorageName, nodeID: NodeID,
        createIfMissing: Bool, options: LMDBEnvironment.Options = LMDBEnvironment.Options()
    ) throws(MetadataError) -> MetadataStore {
        let layout = StorageLayout(root: storageRoot)
        try layout.prepare(createIfMissing: createIfMissing)
        // One process per storage: two would both append to the WAL. LMDB alone would let
        // them, and opening one environment twice in a process breaks LMDB's own locks.
        let lockFile: DiskFile
        do {
            lockFile = try DiskFile.open(layout.lockFile, DiskFile.OpenOptions(flags: O_RDWR | O_CREAT, mode: 0o600))
            // A child process between fork and exec holds a copy of every descriptor, this
            // lock's included, for a moment (raftd spawns processes; so do the tests). A
            // holder that is really running keeps it far longer than this grace period.
            var locked = try lockFile.tryLockExclusive()
            var attempts = 0
            while !locked && attempts < 50 {
                attempts += 1
                usleep(10_000)
                locked = try lockFile.tryLockExclusive()
            }
            guard locked else { throw MetadataError.storageInUse(storageRoot: layout.root) }
        } catch let error as MetadataError {
            throw error
        } catch let error as IOError {
            throw .io(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
        let environment: LMDBEnvironment
        do {
            environment = try LMDBEnvironment(directory: layout.databaseDirectory, options: options)
        } catch {
            throw .lmdb(error)
        }
        let offered = StorageIdentity(
            clusterID: clusterID, nodeID: nodeID, storageName: storageName, incarnation: .first)
        let (databases, state) = try Self.write(environment) { (txn) throws(MetadataError) -> (Databases, State) in
            let meta = try txn.database("meta", create: true)
            guard let schemaBytes = try txn.value(meta, MetaKey.schemaVersion) else {
                guard createIfMissing else { throw .notInitialized(storageRoot: layout.root) }
                return try initialize(txn, identity: offered)
            }
            let schema = try decode("meta", "schema_version") { () throws(DecodeFailure) in
                var reader = ByteReader(schemaBytes)
                try reader.expectVersion(1)
                let version = try reader.u32()
                try reader.expectEnd()
                return version
            }
            guard schema <= Self.schemaVersion else {
                throw .unsupportedSchema(found: schema, supported: Self.schemaVersion)
            }
            guard schema == Self.schemaVersion else {
                throw .corrupt(
                    database: "meta", key: "schema_version", reason: "schema version \(schema) never existed")
            }
            let databases = try Databases(txn, create: false)
            let identity = try readIdentity(txn, databases)
            guard identity.clusterID == clusterID else {
                throw .foreignCluster(storageRoot: layout.root, stored: identity.clusterID, offered: clusterID)
            }
            guard identity.storageName == storageName else {
                throw .storageNameMismatch(storageRoot: layout.root, stored: identity.storageName, offered: storageName)
            }
            guard identity.nodeID == nodeID else {
                throw .nodeMismatch(storageRoot: layout.root, stored: identity.nodeID, offered: nodeID)
            }
            let mark = try readCounter(txn, databases, MetaKey.partitionIDLease, "partition_id_lease")
            return (databases, State(identity: identity, nextPartitionID: mark, leaseEnd: mark))
        }
        return MetadataStore(
            layout: layout, lockFile: lockFile, environment: environment, databases: databases, state: state)
    }

    /// The storage's identity as recorded.
    public var identity: StorageIdentity { state.withLock { $0.identity } }

    /// Closes the LMDB environment and releases the storage's exclusive lock, so the storage
    /// can be opened again (by this process or another). Later calls fail with a `.closed`
    /// LMDB error. Idempotent.
    public func close() {
        environment.close()
        try? lockFile.close()
    }

    /// Records that the storage left the cluster and joined again: the incarnation goes up
    /// by one, so data and messages of the old incarnation are recognised as stale.
    @discardableResult
    public func bumpIncarnation() throws(MetadataError) -> StorageIncarnation {
        try state.withLock { (state) throws(MetadataError) -> StorageIncarnation in
            let databases = self.databases
            let updated = try write { (txn) throws(MetadataError) -> StorageIdentity in
                let stored = try Self.readIdentity(txn, databases)
                guard stored.incarnation.rawValue < UInt64.max else { throw .sequenceExhausted("storage incarnation") }
                let next = StorageIdentity(
                    clusterID: stored.clusterID, nodeID: stored.nodeID, storageName: stored.storageName,
                    incarnation: stored.incarnation.next)
                try txn.set(databases.meta, MetaKey.identity, next.encoded)
                return next
            }
            state.identity = updated
            return updated.incarnation
        }
    }

    /// The last boot value recorded on this storage (0 before the first start).
    public func lastBoot() throws(MetadataError) -> UInt64 {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) -> UInt64 in
            guard let bytes = try txn.value(databases.meta, MetaKey.nodeBoot) else { return 0 }
            return try Self.decode("meta", "node_boot") { () throws(DecodeFailure) in
                var reader = ByteReader(bytes)
                try reader.expectVersion(1)
                let value = try reader.u64()
                try reader.expectEnd()
                return value
            }
        }
    }

    /// Records the node's boot value for this start (durable before it returns). Boot values
    /// only grow: peers drop frames that carry an older one as late traffic of a dead process.
    public func recordBoot(_ boot: UInt64) throws(MetadataError) {
        let databases = self.databases
        try write { (txn) throws(MetadataError) in
            var writer = ByteWriter(version: 1)
            writer.u64(boot)
            try txn.set(databases.meta, MetaKey.nodeBoot, writer.bytes)
        }
    }

    // MARK: - Transactions with typed errors

    func read<T>(_ body: (LMDBReadTransaction) throws(MetadataError) -> T) throws(MetadataError) -> T {
        do {
            return try environment.read { (txn: LMDBReadTransaction) throws -> T in try body(txn) }
        } catch {
            throw Self.metadataError(error)
        }
    }

    func write<T>(_ body: (LMDBWriteTransaction) throws(MetadataError) -> T) throws(MetadataError) -> T {
        try Self.write(environment, body)
    }

    static func write<T>(
        _ environment: LMDBEnvironment, _ body: (LMDBWriteTransaction) throws(MetadataError) -> T
    ) throws(MetadataError) -> T {
        do {
            return try environment.write { (txn: LMDBWriteTransaction) throws -> T in
                do {
                    return try body(txn)
                } catch MetadataError.lmdb(let error) where error.kind == .mapFull {
                    // Handed back as it came, so the environment grows the map and runs
                    // the whole transaction again (wrapped, it would just fail).
                    throw error
                }
            }
        } catch {
            throw metadataError(error)
        }
    }

    private static func metadataError(_ error: any Error) -> MetadataError {
        switch error {
        case let error as MetadataError: error
        case let error as LMDBError: .lmdb(error)
        default: preconditionFailure("unexpected error \(error)")
        }
    }

    /// Runs a decoder over stored bytes, reporting failure as `.corrupt` with where it was.
    static func decode<T>(
        _ database: String, _ key: @autoclosure () -> String, _ body: () throws(DecodeFailure) -> T
    ) throws(MetadataError) -> T {
        do {
            return try body()
        } catch {
            throw .corrupt(database: database, key: key(), reason: error.reason)
        }
    }

    // MARK: - First start and shared records

    private static func initialize(
        _ txn: LMDBWriteTransaction, identity: StorageIdentity
    ) throws(MetadataError) -> (Databases, State) {
        let databases = try Databases(txn, create: true)
        // A database without a schema version must be empty: anything else is a damaged or
        // foreign database, which is never overwritten.
        for database in databases.all {
            if let first = try txn.entries(database, limit: 1).first {
                throw .corrupt(
                    database: database.name, key: describe(first.key),
                    reason: "data present but no schema version recorded")
            }
        }
        var schema = ByteWriter(version: 1)
        schema.u32(schemaVersion)
        try txn.set(databases.meta, MetaKey.schemaVersion, schema.bytes)
        try txn.set(databases.meta, MetaKey.identity, identity.encoded)
        try writeCounter(txn, databases, MetaKey.partitionIDLease, PartitionID.firstAllocated.rawValue)
        try writeCounter(txn, databases, MetaKey.nextGroupID, GroupID.storageMetadata.rawValue + 1)
        let first = PartitionID.firstAllocated.rawValue
        return (databases, State(identity: identity, nextPartitionID: first, leaseEnd: first))
    }

    static func readIdentity(_ txn: some LMDBReadable, _ databases: Databases) throws(MetadataError) -> StorageIdentity
    {
        guard let bytes = try txn.value(databases.meta, MetaKey.identity) else {
            throw .corrupt(database: "meta", key: "identity", reason: "missing")
        }
        return try decode("meta", "identity") { () throws(DecodeFailure) in try StorageIdentity(decoding: bytes) }
    }

    /// Reads a u64 counter of the `meta` database (version byte + u64).
    static func readCounter(
        _ txn: some LMDBReadable, _ databases: Databases, _ key: [UInt8], _ name: String
    ) throws(MetadataError) -> UInt64 {
        guard let bytes = try txn.value(databases.meta, key) else {
            throw .corrupt(database: "meta", key: name, reason: "missing")
        }
        return try decode("meta", name) { () throws(DecodeFailure) in
            var reader = ByteReader(bytes)
            try reader.expectVersion(1)
            let value = try reader.u64()
            try reader.expectEnd()
            guard value >= 2 else { throw DecodeFailure("counter \(value) is below the first allocatable ID 2") }
            return value
        }
    }

    static func writeCounter(
        _ txn: LMDBWriteTransaction, _ databases: Databases, _ key: [UInt8], _ value: UInt64
    ) throws(MetadataError) {
        var writer = ByteWriter(version: 1)
        writer.u64(value)
        try txn.set(databases.meta, key, writer.bytes)
    }

    /// A key for error messages: text when it is printable ASCII, hexadecimal otherwise.
    static func describe(_ key: [UInt8]) -> String {
        if !key.isEmpty, key.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return String(decoding: key, as: UTF8.self) }
        let digits = Array("0123456789abcdef")
        return "0x" + String(key.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
    }

    /// The 8-byte big-endian key of a group, so groups sort numerically.
    static func groupKey(_ group: GroupID) -> [UInt8] {
        withUnsafeBytes(of: group.rawValue.bigEndian) { Array($0) }
    }
}

import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A named database inside an environment. Valid for the environment's lifetime.
public struct LMDBDatabase: Sendable, Equatable {
    let handle: MDB_dbi
    public let name: String
}

/// An LMDB environment (one directory holding `data.mdb` and `lock.mdb`), with a map that
/// grows on demand.
///
/// Transactions run inside closures. A write closure can run more than once: when the map
/// is full it is aborted, the map doubles (up to `maxMapSize`) and the closure runs again,
/// so it must not have effects outside the transaction.
public final class LMDBEnvironment: @unchecked Sendable {
    public struct Options: Sendable {
        public var maxDatabases: Int = 32
        public var initialMapSize: Int = 16 << 20
        /// The map never grows past this; a write that needs more fails with `.mapFull`.
        public var maxMapSize: Int = 1 << 40
        public var maxReaders: Int = 126
        public var fileMode: mode_t = 0o600

        public init() {}
    }

    public let directory: String
    public let options: Options
    private let env: OpaquePointer
    /// Shared by transactions, exclusive while the map is resized or the environment closed.
    private let resizeLock = ReadWriteLock()
    /// Set once by `close()`. Invariant: read and written only under `resizeLock`.
    private nonisolated(unsafe) var isClosed = false

    /// Opens (creating the files if the directory has none) the environment in `directory`,
    /// which must exist. A foreign or damaged `data.mdb` is refused with `.notAnLMDBFile`,
    /// `.versionMismatch` or `.corrupted`.
    public init(directory: String, options: Options = Options()) throws(LMDBError) {
        precondition(options.initialMapSize > 0 && options.initialMapSize <= options.maxMapSize)
        var created: OpaquePointer?
        var rc = mdb_env_create(&created)
        guard rc == 0, let env = created else { throw LMDBError("mdb_env_create", path: directory, code: rc) }
        rc = mdb_env_set_maxdbs(env, MDB_dbi(options.maxDatabases))
        if rc == 0 { rc = mdb_env_set_maxreaders(env, UInt32(options.maxReaders)) }
        if rc == 0 { rc = mdb_env_set_mapsize(env, options.initialMapSize) }
        // MDB_NOTLS: read transactions are not tied to a thread (Swift tasks move between threads).
        if rc == 0 { rc = mdb_env_open(env, directory, UInt32(MDB_NOTLS), options.fileMode) }
        if rc != 0 {
            mdb_env_close(env)
            throw LMDBError("open metadata database", path: directory, code: rc)
        }
        self.env = env
        self.directory = directory
        self.options = options
    }

    deinit { if !isClosed { mdb_env_close(env) } }

    /// Closes the environment once every transaction in progress has finished; later
    /// operations fail with `.closed`. Idempotent.
    public func close() {
        resizeLock.withExclusive {
            guard !isClosed else { return }
            mdb_env_close(env)
            isClosed = true
        }
    }

    /// The current map size in bytes (0 once closed).
    public var mapSize: Int {
        resizeLock.withShared {
            guard !isClosed else { return 0 }
            var info = MDB_envinfo()
            mdb_env_info(env, &info)
            return info.me_mapsize
        }
    }

    /// Opens the named database, creating it when `create` is set.
    public func database(_ name: String, create: Bool) throws(LMDBError) -> LMDBDatabase {
        try write { (txn) throws(LMDBError) in try txn.openDatabase(name, create: create) }
    }

    /// Runs `body` in a read-only transaction, which sees one consistent snapshot.
    public func read<T>(_ body: (LMDBReadTransaction) throws -> T) throws -> T {
        while true {
            do {
                return try resizeLock.withShared {
                    let txn = try begin(flags: UInt32(MDB_RDONLY))
                    defer { mdb_txn_abort(txn) }
                    return try body(LMDBReadTransaction(handle: txn, path: directory))
                }
            } catch let error as LMDBError where error.code == MDB_MAP_RESIZED {
                try adoptResize()
            }
        }
    }

    /// Runs `body` in a write transaction and commits it; an error thrown by `body` aborts
    /// the transaction, leaving nothing behind.
    public func write<T>(_ body: (LMDBWriteTransaction) throws -> T) throws -> T {
        while true {
            let outcome: Result<T, any Error> = resizeLock.withShared {
                Result {
                    let txn = try begin(flags: 0)
                    let value: T
                    do {
                        value = try body(LMDBWriteTransaction(handle: txn, path: directory))
                    } catch {
                        mdb_txn_abort(txn)
                        throw error
                    }
                    let rc = mdb_txn_commit(txn)  // frees the transaction, on failure too
                    if rc != 0 { throw LMDBError("commit", path: directory, code: rc) }
                    return value
                }
            }
            switch outcome {
            case .success(let value):
                return value
            case .failure(let error as LMDBError) where error.kind == .mapFull:
                try grow()
            case .failure(let error as LMDBError) where error.code == MDB_MAP_RESIZED:
                try adoptResize()
            case .failure(let error):
                throw error
            }
        }
    }

    /// Typed-throws convenience for callers whose body throws only LMDB errors.
    public func write<T>(_ body: (LMDBWriteTransaction) throws(LMDBError) -> T) throws(LMDBError) -> T {
        do {
            return try write { (txn: LMDBWriteTransaction) throws -> T in try body(txn) }
        } catch let error as LMDBError {
            throw error
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }

    private func begin(flags: UInt32) throws(LMDBError) -> OpaquePointer {
        // Called under the shared lock, so `close()` cannot run concurrently.
        if isClosed { throw LMDBError(closedFor: "begin transaction", path: directory) }
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, flags, &txn)
        if rc == MDB_MAP_RESIZED {
            // Another process grew the map; adopting it needs no active transaction in this
            // process, which the caller's shared lock cannot promise: report and retry.
            throw LMDBError("begin transaction", path: directory, code: rc)
        }
        if rc == 0, txn == nil { rc = EINVAL }
        if rc != 0 { throw LMDBError("begin transaction", path: directory, code: rc) }
        return txn!
    }

    private func grow() throws(LMDBError) {
        let current = mapSize
        guard current < options.maxMapSize else {
            throw LMDBError("grow metadata map beyond \(options.maxMapSize) bytes", path: directory, code: MDB_MAP_FULL)
        }
        let wanted = min(current * 2, options.maxMapSize)
        let rc = resizeLock.withExclusive { isClosed ? EBADF : mdb_env_set_mapsize(env, wanted) }
        if rc == EBADF { throw LMDBError(closedFor: "grow metadata map", path: directory) }
        if rc != 0 { throw LMDBError("grow metadata map to \(wanted) bytes", path: directory, code: rc) }
    }

    private func adoptResize() throws(LMDBError) {
        let rc = resizeLock.withExclusive { isClosed ? EBADF : mdb_env_set_mapsize(env, 0) }
        if rc == EBADF { throw LMDBError(closedFor: "adopt the metadata map size", path: directory) }
        if rc != 0 { throw LMDBError("adopt the metadata map size", path: directory, code: rc) }
    }
}

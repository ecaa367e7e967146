import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A failed LMDB operation, with what an operator needs to act on it.
public struct LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The file is not an LMDB database (a foreign or damaged file).
        case notAnLMDBFile
        /// The file was written by an incompatible LMDB version.
        case versionMismatch
        /// LMDB found a damaged page or an unusable environment.
        case corrupted
        /// The map reached its configured maximum size.
        case mapFull
        /// Too many concurrent read transactions.
        case readersFull
        /// A named database was asked for without `create` and does not exist.
        case databaseNotFound
        /// More named databases than the environment was opened for.
        case tooManyDatabases
        /// A key or value was larger than LMDB allows.
        case badValueSize
        /// An errno from the operating system.
        case system(IOError.Kind)
        /// The environment was closed (its storage was closed); nothing more can be read
        /// or written through it.
        case closed
        case other
    }

    public let kind: Kind
    public let code: Int32
    public let operation: String
    public let path: String

    public init(_ operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
        switch code {
        case MDB_INVALID: kind = .notAnLMDBFile
        case MDB_VERSION_MISMATCH: kind = .versionMismatch
        case MDB_CORRUPTED, MDB_PANIC, MDB_PAGE_NOTFOUND: kind = .corrupted
        case MDB_MAP_FULL: kind = .mapFull
        case MDB_READERS_FULL: kind = .readersFull
        case MDB_NOTFOUND: kind = .databaseNotFound
        case MDB_DBS_FULL: kind = .tooManyDatabases
        case MDB_BAD_VALSIZE: kind = .badValueSize
        case let errno where errno > 0: kind = .system(IOError.Kind(errno: errno))
        default: kind = .other
        }
    }

    /// The error for an operation on a closed environment.
    init(closedFor operation: String, path: String) {
        self.operation = operation
        self.path = path
        self.code = 0
        self.kind = .closed
    }

    public var description: String {
        if kind == .closed { return "\(operation) \(path): the metadata store is closed (its storage was closed)" }
        let message = String(cString: mdb_strerror(code))
        let advice: String
        switch kind {
        case .notAnLMDBFile, .versionMismatch:
            advice =
                "; this is not raftd's metadata database: check the storage path, or restore the directory from a backup"
        case .corrupted:
            advice =
                "; the metadata database is damaged: stop this storage and restore it (do not delete it: the WAL depends on it)"
        case .mapFull:
            advice = "; raise the metadata map size limit"
        default:
            advice = ""
        }
        return "\(operation) \(path): \(message) (\(code))\(advice)"
    }
}

import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What read and write transactions share: lookups and ordered scans.
///
/// A transaction value is only valid inside the closure that received it. Keys compare
/// as unsigned bytes, shorter first on a common prefix (LMDB's default), so big-endian
/// integers sort numerically.
public protocol LMDBReadable {
    var handle: OpaquePointer { get }
    var path: String { get }
}

extension LMDBReadable {
    /// The value stored under `key`, or nil.
    public func get(_ database: LMDBDatabase, _ key: [UInt8]) throws(LMDBError) -> [UInt8]? {
        try withValue(database, key) { $0.map { Array($0) } }
    }

    /// Passes the stored bytes (valid only inside `body`) without copying them.
    public func withValue<T>(
        _ database: LMDBDatabase,
        _ key: [UInt8],
        _ body: (UnsafeRawBufferPointer?) -> T
    ) throws(LMDBError) -> T {
        var value = MDB_val()
        let rc = key.withUnsafeBytes { keyBytes in
            var keyVal = MDB_val(
                mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return mdb_get(handle, database.handle, &keyVal, &value)
        }
        if rc == MDB_NOTFOUND { return body(nil) }
        if rc != 0 { throw LMDBError("get from \(database.name)", path: path, code: rc) }
        return body(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
    }

    /// Visits the entries with `lower <= key < upper` (no upper bound when nil) in key
    /// order; `body` returns false to stop early. The buffers are valid only inside `body`.
    public func scan(
        _ database: LMDBDatabase,
        from lower: [UInt8] = [],
        to upper: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        var rc = mdb_cursor_open(handle, database.handle, &cursor)
        if rc != 0 { throw LMDBError("open cursor on \(database.name)", path: path, code: rc) }
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var value = MDB_val()
        rc = lower.withUnsafeBytes { lowerBytes in
            key = MDB_val(mv_size: lowerBytes.count, mv_data: UnsafeMutableRawPointer(mutating: lowerBytes.baseAddress))
            return lower.isEmpty
                ? mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
                : mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
        }
        while rc == 0 {
            let keyBytes = UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size)
            if let upper, Self.compare(keyBytes, upper) >= 0 { return }
            let valueBytes = UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
            guard try body(keyBytes, valueBytes) else { return }
            rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { throw LMDBError("scan \(database.name)", path: path, code: rc) }
    }

    /// The number of entries in the database.
    public func count(_ database: LMDBDatabase) throws(LMDBError) -> Int {
        var stat = MDB_stat()
        let rc = mdb_stat(handle, database.handle, &stat)
        if rc != 0 { throw LMDBError("stat \(database.name)", path: path, code: rc) }
        return stat.ms_entries
    }

    /// LMDB's default order: memcmp over the common length, then the shorter key first.
    static func compare(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Int {
        let common = min(a.count, b.count)
        for i in 0..<common where a[i] != b[i] {
            return a[i] < b[i] ? -1 : 1
        }
        return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
    }
}

/// A read-only transaction: one consistent snapshot of the environment.
public struct LMDBReadTransaction: LMDBReadable {
    public let handle: OpaquePointer
    public let path: String
}

/// A write transaction. Its changes become visible, and durable, when the closure that
/// received it returns; an error thrown from the closure discards them all.
public struct LMDBWriteTransaction: LMDBReadable {
    public let handle: OpaquePointer
    public let path: String

    /// Stores `value` under `key`, replacing any previous value.
    public func put(_ database: LMDBDatabase, _ key: [UInt8], _ value: [UInt8]) throws(LMDBError) {
        let rc = key.withUnsafeBytes { keyBytes in
            value.withUnsafeBytes { valueBytes in
                var k = MDB_val(
                    mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
                var v = MDB_val(
                    mv_size: valueBytes.count, mv_data: UnsafeMutableRawPointer(mutating: valueBytes.baseAddress))
                return mdb_put(handle, database.handle, &k, &v, 0)
            }
        }
        if rc != 0 { throw LMDBError("put into \(database.name)", path: path, code: rc) }
    }

    /// Removes `key`; returns whether it existed.
    @discardableResult
    public func delete(_ database: LMDBDatabase, _ key: [UInt8]) throws(LMDBError) -> Bool {
        let rc = key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return mdb_del(handle, database.handle, &k, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        if rc != 0 { throw LMDBError("delete from \(database.name)", path: path, code: rc) }
        return true
    }

    /// Opens a named database inside this transaction (handles stay valid after commit).
    public func openDatabase(_ name: String, create: Bool) throws(LMDBError) -> LMDBDatabase {
        var dbi: MDB_dbi = 0
        let rc = mdb_dbi_open(handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi)
        if rc != 0 { throw LMDBError("open database \(name)", path: path, code: rc) }
        return LMDBDatabase(handle: dbi, name: name)
    }
}

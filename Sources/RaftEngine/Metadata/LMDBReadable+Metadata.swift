/// The LMDB calls the metadata store uses, with `MetadataError` as their typed error, so
/// that every store operation throws one error type.
extension LMDBReadable {
    func value(_ database: LMDBDatabase, _ key: [UInt8]) throws(MetadataError) -> [UInt8]? {
        do {
            return try get(database, key)
        } catch {
            throw .lmdb(error)
        }
    }

    /// Copies the entries with `lower <= key < upper` (no upper bound when nil) in key
    /// order, at most `limit` of them.
    func entries(
        _ database: LMDBDatabase, from lower: [UInt8] = [], to upper: [UInt8]? = nil, limit: Int = .max
    ) throws(MetadataError) -> [(key: [UInt8], value: [UInt8])] {
        precondition(limit >= 0)
        var out: [(key: [UInt8], value: [UInt8])] = []
        guard limit > 0 else { return out }
        do {
            try scan(database, from: lower, to: upper) { key, value in
                out.append((Array(key), Array(value)))
                return out.count < limit
            }
        } catch let error as LMDBError {
            throw .lmdb(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
        return out
    }
}

extension LMDBWriteTransaction {
    /// Opens a named database; a missing one (without `create`) in an initialized store is
    /// damage, reported as `.corrupt`.
    func database(_ name: String, create: Bool) throws(MetadataError) -> LMDBDatabase {
        do {
            return try openDatabase(name, create: create)
        } catch  where error.kind == .databaseNotFound {
            throw .corrupt(database: name, key: "-", reason: "the database is missing")
        } catch {
            throw .lmdb(error)
        }
    }

    func set(_ database: LMDBDatabase, _ key: [UInt8], _ value: [UInt8]) throws(MetadataError) {
        do {
            try put(database, key, value)
        } catch {
            throw .lmdb(error)
        }
    }

    @discardableResult
    func remove(_ database: LMDBDatabase, _ key: [UInt8]) throws(MetadataError) -> Bool {
        do {
            return try delete(database, key)
        } catch {
            throw .lmdb(error)
        }
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, or nil
/// when there is none (the prefix is empty or all 0xFF): the exclusive upper bound of a
/// prefix scan.
func prefixSuccessor(_ prefix: [UInt8]) -> [UInt8]? {
    var bound = prefix
    while let last = bound.last {
        if last < 0xFF {
            bound[bound.count - 1] = last + 1
            return bound
        }
        bound.removeLast()
    }
    return nil
}

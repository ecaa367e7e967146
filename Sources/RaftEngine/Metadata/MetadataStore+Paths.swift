/// A repository and the partition it belongs to.
public struct PathMapping: Hashable, Sendable, CustomStringConvertible {
    public let path: RelativePath
    public let partition: PartitionKey

    public init(path: RelativePath, partition: PartitionKey) {
        self.path = path
        self.partition = partition
    }

    public var description: String { "\(path) -> \(partition)" }
}

/// Relative path -> partition key: which partition holds each repository of this storage.
///
/// Invariants: every mapped path belongs to a partition registered here; a path belongs to
/// exactly one partition; `partition_paths` holds `key ++ path` exactly when `paths` maps
/// `path` to `key` (both written in one transaction).
extension MetadataStore {
    /// Maps `path` to the registered partition `key`. Mapping it again to the same
    /// partition changes nothing; a path that belongs to another partition is refused.
    public func mapPath(_ path: RelativePath, to key: PartitionKey) throws(MetadataError) {
        try mapPaths([path], to: key)
    }

    /// Maps every path of `paths` to the registered partition `key` in one transaction (an
    /// object pool and its members join a partition together). All or nothing: one path
    /// that belongs to another partition refuses the whole call.
    public func mapPaths(_ paths: [RelativePath], to key: PartitionKey) throws(MetadataError) {
        let databases = self.databases
        try write { (txn) throws(MetadataError) in
            guard try Self.record(txn, databases, key) != nil else { throw .partitionNotFound(key) }
            for path in paths {
                if let existing = try Self.mappedPartition(txn, databases, path) {
                    guard existing == key else { throw .pathMappedElsewhere(path, existing: existing, offered: key) }
                    continue
                }
                var value = ByteWriter(version: 1)
                value.append(key.encoded)
                try txn.set(databases.paths, path.utf8, value.bytes)
                try txn.set(databases.partitionPaths, key.encoded + path.utf8, [])
            }
        }
    }

    /// The partition that holds `path`, or nil.
    public func partitionKey(for path: RelativePath) throws(MetadataError) -> PartitionKey? {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) in try Self.mappedPartition(txn, databases, path) }
    }

    /// Removes the mapping of `path`; returns the partition it belonged to, or nil.
    @discardableResult
    public func unmapPath(_ path: RelativePath) throws(MetadataError) -> PartitionKey? {
        let databases = self.databases
        return try write { (txn) throws(MetadataError) -> PartitionKey? in
            guard let key = try Self.mappedPartition(txn, databases, path) else { return nil }
            try txn.remove(databases.paths, path.utf8)
            try txn.remove(databases.partitionPaths, key.encoded + path.utf8)
            return key
        }
    }

    /// The mappings whose path starts with `prefix` (bytes, not components: `group/a`
    /// matches `group/a.git` and `group/ab.git`), in path byte order, at most `limit`.
    public func pathMappings(withPrefix prefix: String = "", limit: Int = .max) throws(MetadataError) -> [PathMapping] {
        let databases = self.databases
        let lower = Array(prefix.utf8)
        return try read { (txn) throws(MetadataError) -> [PathMapping] in
            try txn.entries(databases.paths, from: lower, to: prefixSuccessor(lower), limit: limit).map {
                (entry) throws(MetadataError) -> PathMapping in
                let path = try Self.decode("paths", Self.describe(entry.key)) { () throws(DecodeFailure) in
                    try DecodeFailure.validating { () throws(IdentityError) in try RelativePath(bytes: entry.key) }
                }
                return PathMapping(path: path, partition: try Self.decodePathValue(path, entry.value))
            }
        }
    }

    /// The paths of partition `key`, in path byte order, at most `limit`.
    public func paths(of key: PartitionKey, limit: Int = .max) throws(MetadataError) -> [RelativePath] {
        let databases = self.databases
        let prefix = key.encoded
        return try read { (txn) throws(MetadataError) -> [RelativePath] in
            try txn.entries(databases.partitionPaths, from: prefix, to: prefixSuccessor(prefix), limit: limit).map {
                (entry) throws(MetadataError) -> RelativePath in
                try Self.decode("partition_paths", Self.describe(entry.key)) { () throws(DecodeFailure) in
                    guard entry.value.isEmpty else { throw DecodeFailure("unexpected value bytes") }
                    return try DecodeFailure.validating { () throws(IdentityError) in
                        try RelativePath(bytes: entry.key[prefix.count...])
                    }
                }
            }
        }
    }

    static func mappedPartition(
        _ txn: some LMDBReadable, _ databases: Databases, _ path: RelativePath
    ) throws(MetadataError) -> PartitionKey? {
        guard let bytes = try txn.value(databases.paths, path.utf8) else { return nil }
        return try decodePathValue(path, bytes)
    }

    private static func decodePathValue(_ path: RelativePath, _ bytes: [UInt8]) throws(MetadataError) -> PartitionKey {
        try decode("paths", path.rawValue) { () throws(DecodeFailure) in
            var reader = ByteReader(bytes)
            try reader.expectVersion(1)
            let raw = reader.takeRest()
            return try DecodeFailure.validating { () throws(IdentityError) in try PartitionKey(decoding: raw) }
        }
    }
}

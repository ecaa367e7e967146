/// The routing table: for each partition, where its replicas are, versioned by the
/// (term, index) of the configuration change it derives from.
///
/// Entries are keyed by partition key and independent of the registry: a storage may know
/// the route of a partition it does not host, and removing a local replica keeps the route.
extension MetadataStore {
    /// The routing entry of `key`, or nil.
    public func route(for key: PartitionKey) throws(MetadataError) -> RouteEntry? {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) in try Self.storedRoute(txn, databases, key) }
    }

    /// Stores `entry` for `key` if its version is strictly newer than the stored one.
    /// An equal or older version is refused with `.staleRoute` and nothing changes: updates
    /// can arrive late or twice, and every replica must end on the same newest entry.
    public func updateRoute(_ entry: RouteEntry, for key: PartitionKey) throws(MetadataError) {
        let databases = self.databases
        try write { (txn) throws(MetadataError) in
            if let stored = try Self.storedRoute(txn, databases, key), !(stored.version < entry.version) {
                throw .staleRoute(key, stored: stored.version, offered: entry.version)
            }
            try txn.set(databases.routes, key.encoded, entry.encoded)
        }
    }

    /// Removes the routing entry of `key` (the partition was deleted); returns whether
    /// there was one.
    @discardableResult
    public func removeRoute(for key: PartitionKey) throws(MetadataError) -> Bool {
        let databases = self.databases
        return try write { (txn) throws(MetadataError) in try txn.remove(databases.routes, key.encoded) }
    }

    /// The routing entries in partition key order, starting after `after`, at most `limit`.
    public func routes(
        after: PartitionKey? = nil, limit: Int = .max
    ) throws(MetadataError) -> [(
        key: PartitionKey, entry: RouteEntry
    )] {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) -> [(key: PartitionKey, entry: RouteEntry)] in
            let lower = after.map { $0.encoded + [0] } ?? []
            return try txn.entries(databases.routes, from: lower, limit: limit).map {
                (raw) throws(MetadataError) -> (key: PartitionKey, entry: RouteEntry) in
                let key = try Self.decode("routes", Self.describe(raw.key)) { () throws(DecodeFailure) in
                    try DecodeFailure.validating { () throws(IdentityError) in try PartitionKey(decoding: raw.key) }
                }
                return (key, try Self.decodeRoute(key, raw.value))
            }
        }
    }

    static func storedRoute(
        _ txn: some LMDBReadable, _ databases: Databases, _ key: PartitionKey
    ) throws(MetadataError) -> RouteEntry? {
        guard let bytes = try txn.value(databases.routes, key.encoded) else { return nil }
        return try decodeRoute(key, bytes)
    }

    private static func decodeRoute(_ key: PartitionKey, _ bytes: [UInt8]) throws(MetadataError) -> RouteEntry {
        try decode("routes", key.description) { () throws(DecodeFailure) in try RouteEntry(decoding: bytes) }
    }
}

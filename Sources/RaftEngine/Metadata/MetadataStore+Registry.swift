/// The partition registry: which partition replicas this storage hosts, under which local
/// group ID, in which replication mode and lifecycle state.
///
/// Invariant: `partitions[key].group == g` exactly when `groups[g] == key`; both are
/// written and removed in the same transaction.
extension MetadataStore {
    /// Registers a replica of `key` on this storage under a fresh local group ID.
    /// Refuses a partition that is already registered (whatever its state).
    @discardableResult
    public func registerPartition(
        _ key: PartitionKey, mode: ReplicationMode, state: ReplicaState = .initializing
    ) throws(MetadataError) -> PartitionRecord {
        let databases = self.databases
        return try write { (txn) throws(MetadataError) -> PartitionRecord in
            if let existing = try Self.record(txn, databases, key) {
                throw .partitionAlreadyRegistered(key, group: existing.group)
            }
            let record = PartitionRecord(key: key, group: try takeGroupID(txn), mode: mode, state: state)
            try txn.set(databases.partitions, key.encoded, record.encodedValue)
            var reverse = ByteWriter(version: 1)
            reverse.append(key.encoded)
            try txn.set(databases.groups, Self.groupKey(record.group), reverse.bytes)
            return record
        }
    }

    /// The replica of `key` hosted here, or nil.
    public func partition(_ key: PartitionKey) throws(MetadataError) -> PartitionRecord? {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) in try Self.record(txn, databases, key) }
    }

    /// The replica registered under the local `group`, or nil.
    public func partition(group: GroupID) throws(MetadataError) -> PartitionRecord? {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) in try Self.record(txn, databases, group: group) }
    }

    /// Moves the replica of `key` to `state`; refuses a move backwards (see `ReplicaState`).
    @discardableResult
    public func updateReplicaState(
        _ state: ReplicaState, of key: PartitionKey
    ) throws(MetadataError)
        -> PartitionRecord
    {
        try update(key) { (record) throws(MetadataError) in
            guard record.state.canMove(to: state) else {
                throw .invalidStateTransition(key, from: record.state, to: state)
            }
            record.state = state
        }
    }

    /// Switches the replication mode of the replica of `key`; no data moves.
    @discardableResult
    public func updateReplicationMode(
        _ mode: ReplicationMode, of key: PartitionKey
    ) throws(MetadataError)
        -> PartitionRecord
    {
        try update(key) { (record) throws(MetadataError) in record.mode = mode }
    }

    /// Switches every active replica of this storage in mode `from` to mode `to`, in one
    /// transaction; returns the keys switched.
    public func updateReplicationModes(
        from: ReplicationMode, to: ReplicationMode
    ) throws(MetadataError)
        -> [PartitionKey]
    {
        let records = try partitions().filter { $0.mode == from && $0.state == .active }
        let databases = self.databases
        return try write { (txn) throws(MetadataError) -> [PartitionKey] in
            var switched: [PartitionKey] = []
            for old in records {
                guard var record = try Self.record(txn, databases, old.key), record.mode == from else { continue }
                record.mode = to
                try txn.set(databases.partitions, record.key.encoded, record.encodedValue)
                switched.append(record.key)
            }
            return switched
        }
    }

    /// Removes a tombstoned replica of `key` with everything the store keeps for it: the
    /// reverse index, its configuration, its applied index and its relative paths. Its
    /// group ID is never handed out again. Routing entries are kept: they describe the
    /// partition, not this replica. Returns the removed record.
    @discardableResult
    public func removePartition(_ key: PartitionKey) throws(MetadataError) -> PartitionRecord {
        try removePartition(key, from: [.tombstoned])
    }

    /// Removes the replica of `key` in one transaction when its state is one of `states`
    /// (a replica leaving its group is tombstoned and removed at once: no crash can leave
    /// a tombstone that nothing ever removes).
    @discardableResult
    public func removePartition(
        _ key: PartitionKey, from states: Set<ReplicaState>
    ) throws(MetadataError)
        -> PartitionRecord
    {
        let databases = self.databases
        return try write { (txn) throws(MetadataError) -> PartitionRecord in
            guard let record = try Self.record(txn, databases, key) else { throw .partitionNotFound(key) }
            guard states.contains(record.state) else { throw .partitionNotTombstoned(key, state: record.state) }
            let groupKey = Self.groupKey(record.group)
            try txn.remove(databases.partitions, key.encoded)
            try txn.remove(databases.groups, groupKey)
            try txn.remove(databases.confStates, groupKey)
            try txn.remove(databases.confStates, Self.initialConfKey(record.group))
            try txn.remove(databases.applied, groupKey)
            // Bounded batches keep the copied keys small for partitions with many repositories.
            while true {
                let batch = try txn.entries(
                    databases.partitionPaths, from: key.encoded, to: prefixSuccessor(key.encoded), limit: 1024)
                if batch.isEmpty { break }
                for entry in batch {
                    try txn.remove(databases.partitionPaths, entry.key)
                    try txn.remove(databases.paths, Array(entry.key[key.encoded.count...]))
                }
            }
            return record
        }
    }

    /// The registered replicas in partition key order, starting after `after` (for paging),
    /// at most `limit` of them.
    public func partitions(after: PartitionKey? = nil, limit: Int = .max) throws(MetadataError) -> [PartitionRecord] {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) -> [PartitionRecord] in
            // The smallest key greater than `after`: byte forms are prefix-free, so
            // appending a zero byte gives exactly that.
            let lower = after.map { $0.encoded + [0] } ?? []
            return try txn.entries(databases.partitions, from: lower, limit: limit).map {
                (entry) throws(MetadataError) -> PartitionRecord in
                let key = try Self.decode("partitions", Self.describe(entry.key)) { () throws(DecodeFailure) in
                    try DecodeFailure.validating { () throws(IdentityError) in try PartitionKey(decoding: entry.key) }
                }
                return try Self.decodeRecord(key, entry.value)
            }
        }
    }

    // MARK: - Shared with the other parts of the store

    private func update(
        _ key: PartitionKey, _ change: (inout PartitionRecord) throws(MetadataError) -> Void
    ) throws(MetadataError) -> PartitionRecord {
        let databases = self.databases
        return try write { (txn) throws(MetadataError) -> PartitionRecord in
            guard var record = try Self.record(txn, databases, key) else { throw .partitionNotFound(key) }
            try change(&record)
            try txn.set(databases.partitions, key.encoded, record.encodedValue)
            return record
        }
    }

    static func record(
        _ txn: some LMDBReadable, _ databases: Databases, _ key: PartitionKey
    ) throws(MetadataError) -> PartitionRecord? {
        guard let bytes = try txn.value(databases.partitions, key.encoded) else { return nil }
        return try decodeRecord(key, bytes)
    }

    /// The record of `group` through the reverse index, checking that both sides agree.
    static func record(
        _ txn: some LMDBReadable, _ databases: Databases, group: GroupID
    ) throws(MetadataError) -> PartitionRecord? {
        guard let bytes = try txn.value(databases.groups, groupKey(group)) else { return nil }
        let key = try decode("groups", group.description) { () throws(DecodeFailure) in
            var reader = ByteReader(bytes)
            try reader.expectVersion(1)
            let raw = reader.takeRest()
            return try DecodeFailure.validating { () throws(IdentityError) in try PartitionKey(decoding: raw) }
        }
        guard let record = try record(txn, databases, key), record.group == group else {
            throw .corrupt(
                database: "groups", key: group.description,
                reason: "points to \(key), which is not registered as \(group)")
        }
        return record
    }

    /// The record of a registered group, or `.groupNotFound`.
    static func requireGroup(
        _ txn: some LMDBReadable, _ databases: Databases, _ group: GroupID
    ) throws(MetadataError) -> PartitionRecord {
        guard let record = try record(txn, databases, group: group) else { throw .groupNotFound(group) }
        return record
    }

    private static func decodeRecord(_ key: PartitionKey, _ bytes: [UInt8]) throws(MetadataError) -> PartitionRecord {
        try decode("partitions", key.description) { () throws(DecodeFailure) in
            try PartitionRecord(key: key, decoding: bytes)
        }
    }
}

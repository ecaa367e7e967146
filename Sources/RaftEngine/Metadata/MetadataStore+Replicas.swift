import RaftConsensus

/// Bulk operations of the node host: creating many Raft replicas, recording applied
/// indices with the configuration they correspond to, and loading every replica at start.
/// Each is one transaction (one fsync), however many groups it covers.
extension MetadataStore {
    /// A Raft replica to register: its partition, its group's first routing entry and the
    /// initial configuration.
    public struct NewReplica: Sendable {
        public var key: PartitionKey
        public var route: RouteEntry
        public var confState: StoredConfState
        public var mode: ReplicationMode
        /// The configuration the group's log starts from, when it is not `confState` (a
        /// replica that joins later gets the current entry but replays from the start).
        public var initialConfState: StoredConfState?

        public init(
            key: PartitionKey, route: RouteEntry, confState: StoredConfState, mode: ReplicationMode = .raft,
            initialConfState: StoredConfState? = nil
        ) {
            self.key = key
            self.route = route
            self.confState = confState
            self.mode = mode
            self.initialConfState = initialConfState
        }
    }

    /// A registered Raft replica with what its group needs to start.
    public struct LoadedReplica: Sendable {
        public var record: PartitionRecord
        public var route: RouteEntry?
        public var confState: StoredConfState?
        public var applied: LogIndex
        /// The configuration the group's log starts from (nil for replicas registered
        /// before it was recorded: their configuration never changed, see `load`).
        public var initialConf: StoredConfState?
        /// `initialConf` is the current configuration, taken for a replica registered before
        /// the initial one was recorded (`recordInitialConfs` keeps it).
        public var initialConfInferred = false
    }

    /// Registers every replica in `replicas` as an active Raft replica under a fresh group
    /// ID, with its route and configuration, in one transaction: all or nothing. A key
    /// already registered refuses the whole batch.
    public func createRaftReplicas(_ replicas: [NewReplica]) throws(MetadataError) -> [PartitionRecord] {
        let databases = self.databases
        return try write { (txn) throws(MetadataError) -> [PartitionRecord] in
            var records: [PartitionRecord] = []
            records.reserveCapacity(replicas.count)
            for replica in replicas {
                if let existing = try Self.record(txn, databases, replica.key) {
                    throw .partitionAlreadyRegistered(replica.key, group: existing.group)
                }
                let record = PartitionRecord(
                    key: replica.key, group: try takeGroupID(txn), mode: replica.mode, state: .active)
                try txn.set(databases.partitions, replica.key.encoded, record.encodedValue)
                var reverse = ByteWriter(version: 1)
                reverse.append(replica.key.encoded)
                try txn.set(databases.groups, Self.groupKey(record.group), reverse.bytes)
                // No replica of the partition is registered here (refused above): a stored
                // entry is a removed replica's leftover, or another partition's that had the
                // same key before its authority was re-initialized; the new replica's wins.
                try txn.set(databases.routes, replica.key.encoded, replica.route.encoded)
                try txn.set(databases.confStates, Self.groupKey(record.group), replica.confState.encoded)
                try txn.set(
                    databases.confStates, Self.initialConfKey(record.group),
                    (replica.initialConfState ?? replica.confState).encoded)
                records.append(record)
            }
            return records
        }
    }

    /// Records applied indices, each with the configuration as of that index when it
    /// changed, in one transaction. A restarted group starts from a pair written together,
    /// so the configuration always matches the index it resumes applying after. Indices
    /// must not regress (`.appliedIndexRegressed` refuses the batch).
    public func recordApplied(
        _ updates: [(group: GroupID, index: LogIndex, confState: StoredConfState?)]
    ) throws(MetadataError) {
        try recordApplied(updates.map { ($0.group, $0.index, $0.confState, nil) })
    }

    /// `recordApplied` with the routing entry each change derived: stored in the same
    /// transaction when newer than the stored one (an older one is skipped, not refused:
    /// a replica replaying old changes keeps the newer entry it was given).
    public func recordApplied(
        _ updates: [(group: GroupID, index: LogIndex, confState: StoredConfState?, route: RouteEntry?)]
    ) throws(MetadataError) {
        guard !updates.isEmpty else { return }
        let databases = self.databases
        try write { (txn) throws(MetadataError) in
            for update in updates {
                let record = try Self.requireGroup(txn, databases, update.group)
                if let route = update.route {
                    let stored = try Self.storedRoute(txn, databases, record.key)
                    if stored.map({ $0.version < route.version }) ?? true {
                        try txn.set(databases.routes, record.key.encoded, route.encoded)
                    }
                }
                let stored = try Self.storedApplied(txn, databases, update.group)
                guard update.index >= stored else {
                    throw .appliedIndexRegressed(update.group, stored: stored, offered: update.index)
                }
                if update.index > stored {
                    var writer = ByteWriter(version: 1)
                    writer.u64(update.index.rawValue)
                    try txn.set(databases.applied, Self.groupKey(update.group), writer.bytes)
                }
                if let confState = update.confState {
                    try txn.set(databases.confStates, Self.groupKey(update.group), confState.encoded)
                }
            }
        }
    }

    /// Every registered replica the host runs (Raft or local mode, active or leaving), in
    /// partition key order, with its route, configuration and applied index, read in one
    /// transaction.
    public func loadRaftReplicas() throws(MetadataError) -> [LoadedReplica] {
        let records = try partitions()
        let databases = self.databases
        return try read { (txn) throws(MetadataError) -> [LoadedReplica] in
            var loaded: [LoadedReplica] = []
            loaded.reserveCapacity(records.count)
            for record in records where record.state == .active || record.state == .leaving {
                let route = try Self.storedRoute(txn, databases, record.key)
                let confState = try Self.storedConfState(txn, databases, record.group)
                let applied = try Self.storedApplied(txn, databases, record.group)
                var initial = try Self.storedInitialConf(txn, databases, record.group)
                var inferred = false
                if initial == nil, route?.version.index == .zero {
                    // Registered before the initial configuration was recorded, and never
                    // changed since: the current one is the initial one.
                    initial = confState
                    inferred = initial != nil
                }
                loaded.append(
                    LoadedReplica(
                        record: record, route: route, confState: confState, applied: applied, initialConf: initial,
                        initialConfInferred: inferred))
            }
            return loaded
        }
    }
}

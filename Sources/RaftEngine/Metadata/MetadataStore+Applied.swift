import RaftConsensus

/// Per-group Raft state that must survive a restart outside the WAL: the membership
/// configuration and the applied index (LSN). Both are keyed by local group ID and exist
/// only for registered groups.
extension MetadataStore {
    /// The stored configuration of `group`, or nil when none was stored yet.
    public func confState(for group: GroupID) throws(MetadataError) -> StoredConfState? {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) in try Self.storedConfState(txn, databases, group) }
    }

    static func storedConfState(
        _ txn: some LMDBReadable, _ databases: Databases, _ group: GroupID
    ) throws(MetadataError) -> StoredConfState? {
        guard let bytes = try txn.value(databases.confStates, groupKey(group)) else { return nil }
        return try decode("conf_states", group.description) { () throws(DecodeFailure) in
            try StoredConfState(decoding: bytes)
        }
    }

    /// The configuration the log of `group` starts from (before index 1), kept under the
    /// group's key plus `i` in `conf_states`; written when the replica is registered.
    static func storedInitialConf(
        _ txn: some LMDBReadable, _ databases: Databases, _ group: GroupID
    ) throws(MetadataError) -> StoredConfState? {
        guard let bytes = try txn.value(databases.confStates, initialConfKey(group)) else { return nil }
        return try decode("conf_states", "\(group) initial") { () throws(DecodeFailure) in
            try StoredConfState(decoding: bytes)
        }
    }

    static func initialConfKey(_ group: GroupID) -> [UInt8] { groupKey(group) + [0x69] }

    /// Records the configurations the logs of these groups start from, where none is
    /// recorded yet (replicas registered before it was kept), in one transaction.
    public func recordInitialConfs(_ confs: [(group: GroupID, conf: StoredConfState)]) throws(MetadataError) {
        guard !confs.isEmpty else { return }
        let databases = self.databases
        try write { (txn) throws(MetadataError) in
            for (group, conf) in confs where try Self.storedInitialConf(txn, databases, group) == nil {
                _ = try Self.requireGroup(txn, databases, group)
                try txn.set(databases.confStates, Self.initialConfKey(group), conf.encoded)
            }
        }
    }

    /// Stores the configuration of the registered `group`, replacing the previous one.
    public func setConfState(_ confState: StoredConfState, for group: GroupID) throws(MetadataError) {
        let databases = self.databases
        try write { (txn) throws(MetadataError) in
            _ = try Self.requireGroup(txn, databases, group)
            try txn.set(databases.confStates, Self.groupKey(group), confState.encoded)
        }
    }

    /// The applied index of the registered `group`; `LogIndex.zero` when nothing was
    /// applied yet. An unregistered group is `.groupNotFound`, not zero, so a caller with a
    /// wrong group ID never replays a log from the start.
    public func appliedIndex(for group: GroupID) throws(MetadataError) -> LogIndex {
        let databases = self.databases
        return try read { (txn) throws(MetadataError) in
            _ = try Self.requireGroup(txn, databases, group)
            return try Self.storedApplied(txn, databases, group)
        }
    }

    /// Records that `group` has applied its log up to `index`. The same index again is
    /// accepted (apply is idempotent and may be retried after a crash); a lower one is
    /// refused with `.appliedIndexRegressed`.
    public func setAppliedIndex(_ index: LogIndex, for group: GroupID) throws(MetadataError) {
        try setAppliedIndices([(group, index)])
    }

    /// Records the applied indices of many groups in one transaction (one fsync), as the
    /// apply path does once per batch. All or nothing: one unknown group or one regression
    /// refuses the whole batch. A group may appear more than once; its entries must not
    /// decrease in batch order.
    public func setAppliedIndices(_ updates: [(group: GroupID, index: LogIndex)]) throws(MetadataError) {
        guard !updates.isEmpty else { return }
        let databases = self.databases
        try write { (txn) throws(MetadataError) in
            for (group, index) in updates {
                _ = try Self.requireGroup(txn, databases, group)
                let stored = try Self.storedApplied(txn, databases, group)
                guard index >= stored else { throw .appliedIndexRegressed(group, stored: stored, offered: index) }
                if index == stored { continue }
                var writer = ByteWriter(version: 1)
                writer.u64(index.rawValue)
                try txn.set(databases.applied, Self.groupKey(group), writer.bytes)
            }
        }
    }

    static func storedApplied(
        _ txn: some LMDBReadable, _ databases: Databases, _ group: GroupID
    ) throws(MetadataError) -> LogIndex {
        guard let bytes = try txn.value(databases.applied, groupKey(group)) else { return .zero }
        return try decode("applied", group.description) { () throws(DecodeFailure) in
            var reader = ByteReader(bytes)
            try reader.expectVersion(1)
            let index = try reader.u64()
            try reader.expectEnd()
            return LogIndex(index)
        }
    }
}

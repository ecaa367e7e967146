import RaftConsensus

/// A metadata store or storage layout operation that failed or was refused.
///
/// Refusals (`.foreignCluster`, `.staleRoute`, `.appliedIndexRegressed`, ...) change
/// nothing: every check runs inside the write transaction that would make the change, and
/// throwing aborts it.
public enum MetadataError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The LMDB environment failed.
    case lmdb(LMDBError)
    /// A file system call failed while creating or checking the layout.
    case io(IOError)
    /// The storage root, or a directory of the layout, is missing or wrong.
    case layoutInvalid(path: String, problem: String)
    /// The storage has no metadata yet and the caller did not ask to create it.
    case notInitialized(storageRoot: String)
    /// Another process, or another open in this process, is serving the storage.
    case storageInUse(storageRoot: String)
    /// The storage belongs to another cluster.
    case foreignCluster(storageRoot: String, stored: ClusterID, offered: ClusterID)
    /// The storage root was initialized under another storage name.
    case storageNameMismatch(storageRoot: String, stored: StorageName, offered: StorageName)
    /// The storage is owned by another node.
    case nodeMismatch(storageRoot: String, stored: NodeID, offered: NodeID)
    /// The database was written by a newer raftd with a schema this one does not know.
    case unsupportedSchema(found: UInt32, supported: UInt32)
    /// Stored bytes that do not decode: damage, or a bug that wrote them.
    case corrupt(database: String, key: String, reason: String)
    /// A routing update that is not strictly newer than the stored entry.
    case staleRoute(PartitionKey, stored: RouteVersion, offered: RouteVersion)
    /// An applied index lower than the stored one.
    case appliedIndexRegressed(GroupID, stored: LogIndex, offered: LogIndex)
    /// The partition already has a replica registered on this storage.
    case partitionAlreadyRegistered(PartitionKey, group: GroupID)
    /// No replica of the partition is registered on this storage.
    case partitionNotFound(PartitionKey)
    /// No replica is registered under the local group ID.
    case groupNotFound(GroupID)
    /// A replica state change that goes backwards (see `ReplicaState`).
    case invalidStateTransition(PartitionKey, from: ReplicaState, to: ReplicaState)
    /// A removal of a replica that is not tombstoned.
    case partitionNotTombstoned(PartitionKey, state: ReplicaState)
    /// A relative path that already belongs to another partition.
    case pathMappedElsewhere(RelativePath, existing: PartitionKey, offered: PartitionKey)
    /// A value that breaks a rule of its type (a configuration or a route).
    case invalidValue(String)
    /// A sequence reached the end of its range.
    case sequenceExhausted(String)

    public var description: String {
        switch self {
        case .lmdb(let error):
            "metadata database: \(error)"
        case .io(let error):
            "storage layout: \(error)"
        case .layoutInvalid(let path, let problem):
            "storage layout: \(path): \(problem)"
        case .notInitialized(let root):
            "storage \(root) has no raftd metadata (+raft/database); initialize it first"
        case .storageInUse(let root):
            "storage \(root) is already in use (its +raft/lock is held): another raftd serves it, or it is "
                + "opened twice; stop the other process or fix the configuration"
        case .foreignCluster(let root, let stored, let offered):
            "storage \(root) belongs to cluster \(stored), but this node is configured for cluster \(offered): "
                + "check the storage path and the cluster ID in the configuration; to move the storage to this "
                + "cluster, remove it from cluster \(stored) and wipe its +raft directory first"
        case .storageNameMismatch(let root, let stored, let offered):
            "storage \(root) was initialized as storage '\(stored)', but the configuration names it '\(offered)': "
                + "storage names are permanent; fix the configuration"
        case .nodeMismatch(let root, let stored, let offered):
            "storage \(root) is owned by node \(stored), but this node is \(offered): a storage is served by one "
                + "node; start the owning node, or remove the storage from the cluster and add it again"
        case .unsupportedSchema(let found, let supported):
            "metadata schema version \(found) is newer than this raftd supports (\(supported)): "
                + "run the raftd version that wrote it, or a newer one"
        case .corrupt(let database, let key, let reason):
            "metadata database '\(database)' key \(key) is damaged: \(reason); stop this storage and restore "
                + "its +raft/database from a backup or rebuild the replica from its peers"
        case .staleRoute(let key, let stored, let offered):
            "routing update for \(key) at \(offered) refused: the stored entry is at \(stored), and updates must "
                + "be strictly newer"
        case .appliedIndexRegressed(let group, let stored, let offered):
            "applied index of \(group) cannot go back from \(stored) to \(offered)"
        case .partitionAlreadyRegistered(let key, let group):
            "partition \(key) is already registered on this storage as \(group)"
        case .partitionNotFound(let key):
            "partition \(key) is not registered on this storage"
        case .groupNotFound(let group):
            "no partition is registered on this storage as \(group)"
        case .invalidStateTransition(let key, let from, let to):
            "replica of \(key) cannot move from \(from) to \(to)"
        case .partitionNotTombstoned(let key, let state):
            "replica of \(key) is \(state); only a tombstoned replica can be removed from the registry"
        case .pathMappedElsewhere(let path, let existing, let offered):
            "repository \(path) already belongs to partition \(existing), not \(offered); "
                + "remove the mapping before moving the repository"
        case .invalidValue(let reason):
            "invalid metadata value: \(reason)"
        case .sequenceExhausted(let name):
            "the \(name) sequence is exhausted"
        }
    }
}

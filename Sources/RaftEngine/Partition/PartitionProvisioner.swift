import RaftConsensus

/// Places repositories in partitions on one storage of this node: a new repository gets a
/// new partition minted by the storage (a single-node Raft group; the membership issue adds
/// replicas), unless it joins an object pool's partition; an existing bare repository made
/// before this node ran raftd is adopted as it is into a new single-node partition, and no
/// data moves. Every placement is a transaction in the partition's log, so the registry
/// entry is replicated with it.
public struct PartitionProvisioner: Sendable {
    public let host: NodeHost
    public let writer: PartitionWriter
    public let storage: StorageName
    public let metadata: MetadataStore
    /// How long a new group may take to elect its single member.
    public var electionMilliseconds = 10_000
    /// The mode of the partitions it mints: `.raft` (a single-node Raft group, to which
    /// replicas can be added) or `.local` (written without Raft rounds or ticks; switched to
    /// raft later with `NodeHost.setReplicationMode`, moving no data).
    public var mode = ReplicationMode.raft
    /// Storages (of other nodes) that hold the other members of each partition it mints,
    /// members 2, 3, … in order: their replicas are created first (every one must be), then
    /// this node's member 1, which campaigns. Empty: single-member partitions. Only with
    /// `.raft`.
    public var peerStorages: [StorageName] = []

    public init(host: NodeHost, writer: PartitionWriter, storage: StorageName, metadata: MetadataStore) {
        self.host = host
        self.writer = writer
        self.storage = storage
        self.metadata = metadata
    }

    /// Creates the repository at `path`: in `pool`'s partition when given (members of a
    /// pool share its partition), else in a new partition. Returns the partition and the LSN.
    public func createRepository(
        _ path: RelativePath, defaultBranch: RefName, pool: RelativePath? = nil
    ) async throws(PartitionWriteError) -> (PartitionKey, LogIndex) {
        var operations: [PartitionOperation] = [.createRepository(path, defaultBranch: defaultBranch)]
        let key: PartitionKey
        if let pool {
            guard let holder = try lookup(pool) else { throw .refused(.repositoryNotFound(pool.rawValue)) }
            key = holder
            operations.append(.linkToPool(repository: path, pool: pool))
        } else {
            key = try await mint()
        }
        return (key, try await writer.commit(key, PartitionTransaction(operations)))
    }

    /// Creates an object pool in a new partition.
    public func createObjectPool(_ path: RelativePath) async throws(PartitionWriteError) -> (PartitionKey, LogIndex) {
        let key = try await mint()
        return (key, try await writer.commit(key, PartitionTransaction([.createObjectPool(path)])))
    }

    /// Adopts the bare repository already at `path` into a new single-node partition.
    public func adopt(_ path: RelativePath) async throws(PartitionWriteError) -> (PartitionKey, LogIndex) {
        if let holder = try lookup(path) {
            throw .refused(.wrongPartition(repository: path.rawValue, reason: "partition \(holder) holds it already"))
        }
        let key = try await mint()
        return (key, try await writer.commit(key, PartitionTransaction([.adoptRepository(path)])))
    }

    private func lookup(_ path: RelativePath) throws(PartitionWriteError) -> PartitionKey? {
        do { return try metadata.partition(of: path) } catch { throw .refused(error) }
    }

    /// A new partition of this storage, led by this node (in `mode`; with members on
    /// `peerStorages` too), with nothing in it yet. `createRepository` and
    /// `createObjectPool` mint one each; a caller that must retry a creation whose outcome
    /// it does not know mints once and commits into the same partition again.
    public func mint() async throws(PartitionWriteError) -> PartitionKey {
        let key: PartitionKey
        do {
            key = PartitionKey(authority: storage, partitionID: try metadata.allocatePartitionID())
        } catch {
            throw .refused(.storage("allocating a partition ID: \(error)"))
        }
        let member = MemberID(1)
        let others = mode == .raft ? peerStorages : []
        var replicas: [RouteReplica] = []
        do {
            // Each member records its storage's incarnation: a storage that leaves and
            // rejoins no longer trusts it (docs/MEMBERSHIP.md).
            for (offset, name) in ([storage] + others).enumerated() {
                replicas.append(
                    RouteReplica(
                        member: MemberID(UInt64(offset + 1)), storage: name, role: .voter,
                        incarnation: try await host.incarnation(of: name)))
            }
            // The other members first: a leader elected before they exist would send to
            // nobody, and a partition missing a member on some node is worse than none.
            for replica in replicas.dropFirst() {
                try await host.createReplicaOnPeer(
                    ReplicaSpec(partition: key, member: replica.member, storage: replica.storage, replicas: replicas))
            }
            try host.createReplicas([
                ReplicaSpec(
                    partition: key, member: member, storage: storage, replicas: replicas, campaign: true, mode: mode)
            ])
        } catch {
            throw .host(error)
        }
        let deadline = MonotonicClock.system.nanoseconds + electionMilliseconds * 1_000_000
        var last = false
        while true {
            let status: ReplicaStatus?
            do { status = try await host.status(of: key) } catch { status = nil }
            if let status, status.role == .leader { return key }
            // A status answered before a stall of this task (Swift's pool busy) is old by
            // the time it is read: past the deadline, ask once more before giving up.
            if MonotonicClock.system.nanoseconds >= deadline && !last {
                last = true
                continue
            }
            guard !last else {
                throw .timedOut(
                    "new partition \(key) has no leader after \(electionMilliseconds) ms (\(status.map { "\($0)" } ?? "no status"))"
                )
            }
            try? await Task.sleep(nanoseconds: 2_000_000)
        }
    }
}

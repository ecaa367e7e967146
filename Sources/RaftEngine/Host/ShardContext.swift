import RaftConsensus
import Synchronization

/// The application's bulk service, plugged in after the host is built (the service needs
/// the host); shared by every shard.
final class BulkServiceSlot: Sendable {
    private let service = Mutex<(any BulkService)?>(nil)

    var current: (any BulkService)? { service.withLock { $0 } }

    func set(_ new: (any BulkService)?) { service.withLock { $0 = new } }
}

/// The application's snapshot service, plugged in like the bulk service.
final class SnapshotServiceSlot: Sendable {
    private let service = Mutex<(any SnapshotService)?>(nil)

    var current: (any SnapshotService)? { service.withLock { $0 } }

    func set(_ new: (any SnapshotService)?) { service.withLock { $0 = new } }
}

/// What a shard needs to know about its node; shared by all shards, immutable.
package struct ShardContext: Sendable {
    let options: NodeHost.Options
    /// Every node of the cluster, sorted; slots index this array.
    let nodes: [NodeID]
    let selfSlot: Int
    /// This node's storages: slots index these arrays.
    let logs: [SharedLog]
    let storageNames: [StorageName]
    /// Leases and request deadlines are measured in real time, not in ticks (which a
    /// stalled worker merges and a stalled tick thread skips). The simulation injects its own.
    let clock: MonotonicClock
    /// This start's boot value (unique per node and start): ReadIndex contexts carry it.
    let boot: UInt64
    let bulk = BulkServiceSlot()
    let snapshots = SnapshotServiceSlot()
    /// Which node serves which storage: a member's storage (from its routing entry) names
    /// the node its messages go to.
    let cluster: ClusterMap

    package init(
        options: NodeHost.Options, nodes: [NodeID], selfSlot: Int, logs: [SharedLog], storageNames: [StorageName],
        clock: MonotonicClock, boot: UInt64, cluster: ClusterMap
    ) {
        self.cluster = cluster
        self.options = options
        self.nodes = nodes
        self.selfSlot = selfSlot
        self.logs = logs
        self.storageNames = storageNames
        self.clock = clock
        self.boot = boot
    }
}

extension ShardContext {
    /// The consensus configuration of every member the host runs.
    func raftConfig(member: MemberID, applied: LogIndex, seed: UInt64) -> RaftConfig {
        var c = RaftConfig(id: member)
        c.electionTick = options.electionTicks
        c.heartbeatTick = options.heartbeatTicks
        c.applied = applied
        c.preVote = true
        c.checkQuorum = true
        c.maxSizePerMsg = options.maxSizePerMessage
        c.maxInflightMsgs = options.maxInflightMessages
        c.maxUncommittedEntriesSize = options.maxUncommittedBytes
        c.maxCommittedSizePerReady = options.maxApplyBytesPerReady
        c.skipHeartbeatsToAckingFollowers = true
        c.seed = seed
        return c
    }
}

/// An applied index to record in the metadata store, with the configuration as of that
/// index when one of the entries changed it.
struct AppliedUpdate {
    var index: LogIndex
    var confState: ConfState?
    /// The routing entry derived from the change, recorded in the same transaction (only
    /// if newer than the stored one).
    var route: RouteEntry? = nil
}

extension ShardContext {
    /// The node slot serving `storage`, when the cluster knows it.
    func nodeSlot(serving storage: StorageName) -> Int? {
        cluster.node(serving: storage).flatMap { nodes.firstIndex(of: $0) }
    }

    /// The members of `conf` and of `route` with their nodes, from `route` (members it
    /// does not name have none: their messages are dropped until a newer entry names
    /// them). A replica replaying an old part of the log has an older configuration than
    /// its entry: the entry's members (the current leader among them) are reachable too.
    func members(of conf: ConfState, route: RouteEntry) -> [GroupMember] {
        let all = conf.members.union(route.replicas.map(\.member))
        var slots: [MemberID: Int] = [:]
        for replica in route.replicas {
            if let slot = nodeSlot(serving: replica.storage) { slots[replica.member] = slot }
        }
        return all.sorted().map { GroupMember(member: $0, nodeSlot: slots[$0]) }
    }
}

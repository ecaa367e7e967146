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

    package init(
        options: NodeHost.Options, nodes: [NodeID], selfSlot: Int, logs: [SharedLog], storageNames: [StorageName],
        clock: MonotonicClock, boot: UInt64
    ) {
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
}

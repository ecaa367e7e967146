import RaftConsensus

/// What a shard needs to know about its node; shared by all shards, immutable.
struct ShardContext: Sendable {
    let options: NodeHost.Options
    /// Every node of the cluster, sorted; slots index this array.
    let nodes: [NodeID]
    let selfSlot: Int
    /// This node's storages: slots index these arrays.
    let logs: [SharedLog]
    let storageNames: [StorageName]
    /// Monotonic nanoseconds (leases are measured in real time, not in ticks, which a stalled
    /// worker merges and a stalled tick thread skips). The simulation injects its own.
    let clock: @Sendable () -> Int
}

/// The work a turn produced, for the driver to carry out: one frame per peer node, one
/// WAL append per storage, apply jobs.
struct TurnOutput {
    /// Messages per destination node slot (the own slot loops back locally).
    var frames: [[PeerMessage]]
    /// Writes per storage slot; all belong to `token`.
    var writes: [[GroupWrite]]
    var token: UInt64 = 0
    var applyJobs: [ApplyJob] = []

    init(nodes: Int, storages: Int) {
        frames = Array(repeating: [], count: nodes)
        writes = Array(repeating: [], count: storages)
    }

    var hasWrites: Bool { writes.contains { !$0.isEmpty } }
}

/// Counters a shard keeps (read by status, tests and benchmarks).
public struct HostCounters: Sendable, Equatable {
    /// Member ticks given (only awake replicas are ticked).
    public var ticksGiven: UInt64 = 0
    public var turns: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    /// Messages for replicas this node does not host.
    public var messagesDropped: UInt64 = 0
    public var walWrites: UInt64 = 0
    public var entriesWritten: UInt64 = 0
    public var entriesApplied: UInt64 = 0
    public var campaigns: UInt64 = 0
    /// The most campaigns this shard started in one tick.
    public var maxCampaignsInATick: UInt64 = 0
    /// Times a replica of this node became leader.
    public var leadershipsGained: UInt64 = 0
    public var quiesces: UInt64 = 0
    public var suspensions: UInt64 = 0
    public var rehydrations: UInt64 = 0
    public var wakesAfterReturn: UInt64 = 0
    /// Reads answered from a leader lease, without a quorum round.
    public var leaseReads: UInt64 = 0
    public var awake = 0
    public var dormant = 0
    public var replicas = 0

    public init() {}

    public mutating func add(_ o: HostCounters) {
        ticksGiven += o.ticksGiven
        turns += o.turns
        messagesSent += o.messagesSent
        messagesReceived += o.messagesReceived
        messagesDropped += o.messagesDropped
        walWrites += o.walWrites
        entriesWritten += o.entriesWritten
        entriesApplied += o.entriesApplied
        campaigns += o.campaigns
        maxCampaignsInATick = max(maxCampaignsInATick, o.maxCampaignsInATick)
        leadershipsGained += o.leadershipsGained
        quiesces += o.quiesces
        suspensions += o.suspensions
        rehydrations += o.rehydrations
        wakesAfterReturn += o.wakesAfterReturn
        leaseReads += o.leaseReads
        awake += o.awake
        dormant += o.dormant
        replicas += o.replicas
    }
}

/// The groups of one worker and everything done to them, single-threaded and deterministic
/// (given its inputs, in order). `NodeHost` runs one per worker thread; the host simulation
/// drives shards directly with a seed.
///
/// A turn: the driver feeds inputs (peer messages, requests, ticks, durable WAL batches,
/// applied indices), then `runTurn()` takes one Ready from every replica with work and
/// returns the frames, WAL writes and apply jobs to carry out. A replica whose Ready waits
/// for the WAL takes no further Ready until that batch is durable; every other replica
/// continues, so stepping the next turn overlaps the previous batch's fdatasync.
final class HostShard {
    let index: Int
    let context: ShardContext
    var options: NodeHost.Options { context.options }

    /// Replicas by partition (a node may host several replicas of one partition on
    /// different storages).
    var replicas: [PartitionKey: [Replica]] = [:]
    /// Replicas that are ticked.
    var awake: [Replica] = []
    /// Replicas stepped since the last turn.
    var dirty: [Replica] = []
    var now: UInt64 = 0
    var rng: SplitMix64
    var counters = HostCounters()

    /// Node slots currently declared dead.
    var downNodes: Set<Int> = []
    /// Replicas whose leader's node died, waiting for their campaign slot.
    var campaignQueue: [Replica] = []
    /// Replicas to wake because a node they ignored came back.
    var wakeQueue: [Replica] = []
    /// Replicas loaded at start with committed entries left to apply.
    var catchUpQueue: [Replica] = []
    /// Replicas that quiesced, oldest first, with the tick they quiesced at.
    var quiescedQueue: [(replica: Replica, at: UInt64)] = []
    var quiescedHead = 0
    /// Per node slot: replicas that quiesced while that node was dead.
    var laggingByNode: [[Replica]]
    /// Replicas with requests in flight (for deadlines).
    var withRequests: [ObjectIdentifier: Replica] = [:]
    var campaignsThisTick: UInt64 = 0

    /// WAL batches not yet durable: token -> (storages left, replicas waiting).
    var inflight: [UInt64: (remaining: Int, replicas: [Replica])] = [:]
    var nextToken: UInt64 = 1
    var nextReadID: UInt64 = 1
    var output: TurnOutput
    /// Applied indices to record in the metadata store, per storage slot.
    var appliedUpdates: [[GroupID: (index: LogIndex, confState: ConfState?)]]

    init(index: Int, context: ShardContext, seed: UInt64) {
        self.index = index
        self.context = context
        self.rng = SplitMix64(seed: seed ^ (UInt64(index) &* 0xD6E8_FEB8_6659_FD93))
        output = TurnOutput(nodes: context.nodes.count, storages: context.logs.count)
        laggingByNode = Array(repeating: [], count: context.nodes.count)
        appliedUpdates = Array(repeating: [:], count: context.logs.count)
    }

    // MARK: - Replicas

    /// Adds a replica (created or loaded). Fresh replicas that should campaign are queued
    /// for a paced campaign; every other replica starts dormant or quiesced: not ticked
    /// until a message or request wakes it.
    func add(_ replica: Replica, campaign: Bool) {
        replicas[replica.key.partition, default: []].append(replica)
        counters.replicas += 1
        if let suspended = replica.suspended {
            counters.dormant += 1
            // Loaded from disk at start: see `deliver` on vote requests.
            replica.refuseVotesUntil = now + UInt64(options.electionTicks)
            // Committed entries its state machine does not hold yet (a crash between the
            // durable commit and the apply) are applied soon, paced, without waiting for
            // traffic: a replica left dormant would serve stale reads indefinitely.
            if replica.stateMachine.appliedIndex < suspended.commit { catchUpQueue.append(replica) }
        } else if replica.node == nil {
            // A fresh member: nothing stored yet, so it starts as a follower in term 0.
            replica.node = RawNode(config: makeConfig(for: replica), log: replica.stableLog)
        }
        if campaign {
            replica.residency = .awaitingCampaign
            replica.campaignAt = now
            campaignQueue.append(replica)
        }
    }

    /// The local replica of `partition` that should take a request: the leader if one is
    /// local, else the first.
    func replica(for partition: PartitionKey) -> Replica? {
        guard let local = replicas[partition] else { return nil }
        if local.count == 1 { return local[0] }
        return local.first { $0.node?.role == .leader } ?? local[0]
    }

    func replica(_ key: ReplicaKey) -> Replica? {
        guard let local = replicas[key.partition] else { return nil }
        for r in local where r.key.member == key.member { return r }
        return nil
    }

    func makeConfig(for r: Replica) -> RaftConfig {
        var c = RaftConfig(id: r.key.member)
        c.electionTick = options.electionTicks
        c.heartbeatTick = options.heartbeatTicks
        c.applied = r.handedOut
        c.preVote = true
        c.checkQuorum = true
        c.maxSizePerMsg = options.maxSizePerMessage
        c.maxInflightMsgs = options.maxInflightMessages
        c.maxUncommittedEntriesSize = options.maxUncommittedBytes
        c.maxCommittedSizePerReady = options.maxApplyBytesPerReady
        c.skipHeartbeatsToAckingFollowers = true
        c.seed = rng.next()
        return c
    }

    /// Makes the consensus member resident (rebuilding it from the log if dormant).
    @discardableResult
    func resident(_ r: Replica) -> RawNode? {
        if let node = r.node { return node }
        guard r.failure == nil, let suspended = r.suspended else { return nil }
        let node = RawNode(config: makeConfig(for: r), log: r.stableLog, resuming: suspended)
        r.node = node
        r.suspended = nil
        r.residency = .quiesced
        counters.dormant -= 1
        counters.rehydrations += 1
        // Rebuilt quiesced: it shrinks again after a quiet period unless something wakes it.
        noteQuiesced(r)
        return node
    }

    // MARK: - Ticked set

    func setAwake(_ r: Replica) {
        guard r.awakeSlot < 0 else { return }
        r.awakeSlot = awake.count
        awake.append(r)
        r.residency = .awake
    }

    func setNotAwake(_ r: Replica, as residency: ReplicaResidency) {
        r.residency = residency
        guard r.awakeSlot >= 0 else { return }
        let slot = r.awakeSlot
        let last = awake.removeLast()
        if last !== r {
            awake[slot] = last
            last.awakeSlot = slot
        }
        r.awakeSlot = -1
    }

    /// After the member changed: tick it if it is not quiesced, stop ticking it if it is.
    func syncResidency(_ r: Replica) {
        guard let node = r.node, r.residency != .awaitingCampaign, r.failure == nil else { return }
        if node.isQuiesced {
            if r.residency == .awake {
                setNotAwake(r, as: .quiesced)
                noteQuiesced(r)
            }
        } else if r.residency != .awake {
            setAwake(r)
        }
    }

    func markDirty(_ r: Replica) {
        guard !r.isDirty else { return }
        r.isDirty = true
        dirty.append(r)
    }

    func trackRequests(_ r: Replica) {
        if r.hasRequests {
            withRequests[ObjectIdentifier(r)] = r
        } else {
            withRequests.removeValue(forKey: ObjectIdentifier(r))
        }
    }

    /// Nodes slots (other than ours) that are declared dead and host a member of `r`.
    func downMembers(of r: Replica) -> Set<MemberID> {
        guard !downNodes.isEmpty else { return [] }
        var down: Set<MemberID> = []
        for i in r.members.indices where r.memberNodes[i] >= 0 && downNodes.contains(r.memberNodes[i]) {
            down.insert(r.members[i])
        }
        return down
    }

    /// Stops a replica for good after a storage or state machine failure.
    func fail(_ r: Replica, _ reason: String) {
        guard r.failure == nil else { return }
        r.failure = reason
        r.pendingReady = nil
        setNotAwake(r, as: .failed)
        let error = HostError.replicaFailed(reason)
        for p in r.proposals { p.promise(.failure(error)) }
        for read in r.reads { read.promise(.failure(error)) }
        r.proposals = []
        r.reads = []
        trackRequests(r)
    }

    /// Takes the output accumulated since the last call.
    func takeOutput() -> TurnOutput {
        var out = TurnOutput(nodes: context.nodes.count, storages: context.logs.count)
        swap(&out, &output)
        return out
    }

    /// Takes the applied indices to record, per storage slot.
    func takeAppliedUpdates() -> [[GroupID: (index: LogIndex, confState: ConfState?)]] {
        defer { appliedUpdates = Array(repeating: [:], count: context.logs.count) }
        return appliedUpdates
    }

    var snapshotCounters: HostCounters {
        var c = counters
        c.awake = awake.count
        return c
    }
}

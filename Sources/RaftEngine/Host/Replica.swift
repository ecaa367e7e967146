import RaftConsensus

/// Completion of a host request; called exactly once, from any thread.
package typealias Promise<T> = @Sendable (Result<T, HostError>) -> Void

/// A proposal appended to the leader's log, waiting for its index to be handed to apply.
struct PendingProposal {
    var index: LogIndex
    var term: Term
    var deadlineNanoseconds: Int
    var promise: Promise<LogIndex>
}

/// A read waiting for its read index, then for the state machine to reach it.
struct PendingRead {
    /// This shard's counter in the read's `ReadContext`.
    var id: UInt64
    /// Monotonic time at which the read was issued (its ReadIndex heartbeat left no earlier).
    var issuedAtNanoseconds: Int
    var deadlineNanoseconds: Int
    var index: LogIndex?
    var promise: Promise<LogIndex>
}

/// A member of a replica's group and the node slot hosting it (nil: not known yet, e.g. a
/// member added by a configuration change before routing knows its storage).
struct GroupMember {
    let member: MemberID
    let nodeSlot: Int?
}

/// One replica hosted by a shard: its state, its state machine and the requests in flight.
///
/// Owned by one shard and touched only on that shard's worker thread. Apply workers get
/// an `ApplyTarget` (its key and state machine), never the replica.
package final class Replica {
    package let key: ReplicaKey
    let group: GroupID
    let storageSlot: Int
    let storageName: StorageName
    let stateMachine: any StateMachine
    let stableLog: WALStableLog

    /// Where a replica is in its life: exactly one of these at a time.
    ///
    /// ```
    ///  fresh ─────────────────────────────────┐      loaded at start ──> dormant
    ///                                         ▼                            │ message, request
    ///   awaitingCampaign ──(slot due)──> awake <──(tick stops / a message)──> quiesced <─┘
    ///        ▲  (its leader's node died)      │                                │ quiet period
    ///        └────────────────────────────────┴──────────(either)              └──> dormant
    ///   any state ──(storage or state machine failure)──> failed
    /// ```
    enum State {
        /// Ticked; `slot` is its position in the shard's list of ticked replicas.
        case awake(RawNode, slot: Int)
        /// Not ticked: its group is quiet, or it waits for its group's first traffic.
        case quiesced(RawNode)
        /// Its leader's node died: not ticked until its paced campaign slot.
        case awaitingCampaign(RawNode)
        /// Shrunk to the record it is rebuilt from.
        case dormant(SuspendedState)
        /// Stopped for good after a storage or state machine failure. The member is kept only
        /// to hand leadership over (see `HostShard.resign`).
        case failed(reason: String, member: RawNode?)
    }

    /// Members of the group, sorted, each with its node.
    var members: [GroupMember]
    /// The partition's routing entry as this replica derived it from committed changes
    /// (or was given when it was created); `members` take their nodes from it.
    var route = RouteEntry.empty
    /// The configuration the group's log starts from (before index 1), when known: a
    /// replica that joins while the leader's log still starts at 1 replays the log from it.
    var initialConf: ConfState?
    /// Its configuration has members its entry cannot place (a snapshot covered the change
    /// that added them, or a message came from one): the next audit fetches a peer's entry.
    var routeStale = false
    /// The index of the committed change that removed this replica from its group: once
    /// applied through it, the replica stops and the host deletes its data.
    var removedAt: LogIndex?
    /// Why it left its group, once it did: it is stopped, and handed to the host for
    /// deletion when no apply job of it is in flight.
    package var retirePending: String?
    /// `.local`: its group's only member, never ticked; it leads from its first request
    /// (a campaign with no votes to ask for) and commits each entry once it is durable.
    var mode = ReplicationMode.raft

    var state: State

    // MARK: Pipeline

    /// A Ready whose writes are in a WAL batch not yet durable. No other Ready is taken
    /// from the member until it is completed (the core requires advance before ready).
    var pendingReady: Ready?
    var isDirty = false
    /// Tick of the last request, for idle detection.
    var lastActivityTick: UInt64 = 0
    /// The highest fence epoch of a fenced proposal that was not appended (see
    /// `ProposalFence`): later proposals with an epoch at or below it are refused.
    var droppedFenceEpoch: UInt64?
    /// Tick at which it quiesced (for dormancy), when quiesced.
    var quiescedAtTick: UInt64 = 0
    /// When a campaign is scheduled (awaitingCampaign).
    var campaignAtTick: UInt64 = 0
    /// Node slots whose members were ignored when the group quiesced: wake when they return.
    package var laggingNodes: [Int] = []
    /// Until this tick vote requests are dropped: set for an election timeout when the
    /// replica is loaded at start.
    var refuseVotesUntilTick: UInt64 = 0
    /// Leader lease for reads: a ReadIndex round issued at time S and confirmed by a quorum
    /// in `leaseTerm` lets this leader answer reads without a round until S plus half an
    /// election timeout, in monotonic nanoseconds (see docs/HOST.md: followers refuse votes,
    /// and liveness forgets a leader, only an election timeout after they last heard from
    /// its node).
    var leaseTerm = Term.zero
    var leaseUntilNanoseconds = 0
    /// The term it leads in and since when (monotonic nanoseconds), while it leads:
    /// operators see how long a leadership has lasted, and failovers are timed by it.
    var leaderTerm = Term.zero
    var leaderSinceNanoseconds: Int?
    /// The term this replica led in when it failed (it resigns from it).
    var resignTerm = Term.zero
    /// The tick of its last resignation message, and how many it sent.
    var resignedAtTick: UInt64 = 0
    var resignAttempts = 0

    // MARK: Apply

    /// Last index handed to the apply worker (the consensus core's applied index).
    package var handedOut: LogIndex
    /// Last index the state machine applied.
    package var applied: LogIndex
    var applyJobsInFlight = 0

    // MARK: Snapshots

    /// The snapshot a Ready asked to install, between the install job and its durable log
    /// reset (the Ready stays pending meanwhile).
    var installing: Snapshot?
    /// Configurations after the latest changes handed to apply, oldest first (a few): a
    /// snapshot made at an applied index carries the configuration as of that index.
    var confHistory: [(index: LogIndex, confState: ConfState)] = []
    /// The configuration at load (index: the applied index then), before `confHistory`.
    var baseConf: (index: LogIndex, confState: ConfState)
    /// Snapshot transfers this replica leads that are in flight (they hold compaction back).
    var snapshotsSending = 0
    /// The index of the last snapshot sent and when (tick): compaction stays at or below
    /// it until every follower acknowledged it, or for a while.
    var snapshotHold: (index: LogIndex, sinceTick: UInt64)?
    /// A received snapshot message waiting for the Ready in flight to complete.
    var stashedSnapshot: PeerMessage?
    /// A snapshot of this replica is being prepared (leader).
    var preparingSnapshot = false

    /// The configuration as of `index`, if still known.
    func confState(at index: LogIndex) -> ConfState? {
        guard index >= baseConf.index else { return nil }
        var found = baseConf.confState
        for change in confHistory where change.index <= index { found = change.confState }
        return found
    }

    /// A change at `index` was handed to apply; the history keeps the last few.
    func confChanged(at index: LogIndex, to state: ConfState) {
        confHistory.append((index, state))
        if confHistory.count > 8 { baseConf = confHistory.removeFirst() }
    }

    // MARK: Requests

    var proposals: [PendingProposal] = []
    var reads: [PendingRead] = []
    var hasRequests: Bool { !proposals.isEmpty || !reads.isEmpty }

    init(
        key: ReplicaKey, group: GroupID, storageSlot: Int, storageName: StorageName, stateMachine: any StateMachine,
        stableLog: WALStableLog, members: [GroupMember], state: State, applied: LogIndex
    ) {
        self.key = key
        self.group = group
        self.storageSlot = storageSlot
        self.storageName = storageName
        self.stateMachine = stateMachine
        self.stableLog = stableLog
        self.members = members
        self.state = state
        self.handedOut = applied
        self.applied = applied
        self.baseConf = (applied, stableLog.confState)
    }

    /// The node slot hosting `member`, if known.
    func nodeSlot(of member: MemberID) -> Int? {
        for m in members where m.member == member { return m.nodeSlot }
        return nil
    }

    // MARK: State, read

    /// The consensus member, when resident and not failed.
    package var node: RawNode? {
        switch state {
        case .awake(let node, _), .quiesced(let node), .awaitingCampaign(let node): node
        case .dormant, .failed: nil
        }
    }

    /// The dormant record, when dormant.
    package var suspended: SuspendedState? {
        if case .dormant(let record) = state { return record }
        return nil
    }

    /// Why it stopped, when failed.
    var failure: String? {
        if case .failed(let reason, _) = state { return reason }
        return nil
    }

    var isFailed: Bool { failure != nil }

    /// Its position in the shard's ticked list, when awake.
    var awakeSlot: Int? {
        if case .awake(_, let slot) = state { return slot }
        return nil
    }

    package var residency: ReplicaResidency {
        switch state {
        case .awake: .awake
        case .quiesced: .quiesced
        case .awaitingCampaign: .awaitingCampaign
        case .dormant: .dormant
        case .failed: .failed
        }
    }

    /// What an apply worker needs of it.
    var applyTarget: ApplyTarget {
        ApplyTarget(key: key, stateMachine: stateMachine, group: group, storageSlot: storageSlot)
    }

    /// The leader known from the member or the dormant record.
    var knownLeader: MemberID { node?.leader ?? suspended?.lead ?? .none }

    /// The node slot of the known leader, if known.
    var leaderNodeSlot: Int? {
        let leader = knownLeader
        return leader == .none ? nil : nodeSlot(of: leader)
    }

    /// Checks what its state implies (the shard checks the ticked list); the host
    /// simulation runs it after every turn.
    func checkInvariants() {
        switch state {
        case .awake(let node, _):
            precondition(!node.isQuiesced, "\(key): ticked while its member is quiesced")
        case .quiesced, .awaitingCampaign:
            break
        case .dormant:
            precondition(pendingReady == nil && !hasRequests, "\(key): dormant with work in flight")
            precondition(applyJobsInFlight == 0, "\(key): dormant with apply jobs in flight")
        case .failed:
            precondition(pendingReady == nil && !hasRequests, "\(key): failed with requests or a Ready")
        }
        precondition(applied <= handedOut, "\(key): applied \(applied) beyond handed out \(handedOut)")
        if let node {
            precondition(handedOut <= node.logBounds.commit, "\(key): handed out \(handedOut) beyond the commit")
        }
    }
}

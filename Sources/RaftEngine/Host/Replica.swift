import RaftConsensus

/// Completion of a host request; called exactly once, from any thread.
typealias Promise<T> = @Sendable (Result<T, HostError>) -> Void

/// A proposal appended to the leader's log, waiting for its index to be handed to apply.
struct PendingProposal {
    var index: LogIndex
    var term: Term
    var deadline: UInt64
    var promise: Promise<LogIndex>
}

/// A read waiting for its read index, then for the state machine to reach it.
struct PendingRead {
    var id: UInt64
    /// Monotonic time at which the read was issued (its ReadIndex heartbeat left no earlier).
    var issuedAt: Int
    var deadline: UInt64
    var index: LogIndex?
    var promise: Promise<LogIndex>
}

/// One replica hosted by a shard: its consensus member (or the dormant record that replaces
/// it), its state machine and the requests in flight.
///
/// Owned by one shard and touched only on that shard's worker thread, except the immutable
/// `key`, `group`, `storage*` and `stateMachine`, which apply workers read. Hence unchecked.
final class Replica: @unchecked Sendable {
    let key: ReplicaKey
    let group: GroupID
    let storageSlot: Int
    let storageName: StorageName
    let stateMachine: any StateMachine
    let stableLog: WALStableLog

    /// Members of the group and the node slot hosting each (-1: unknown node).
    var members: [MemberID]
    var memberNodes: [Int]

    /// The consensus member; nil while dormant.
    var node: RawNode?
    /// The dormant record; set exactly when `node` is nil.
    var suspended: SuspendedState?
    var residency: ReplicaResidency
    /// Stop reason after a storage or state machine failure.
    var failure: String?

    // MARK: Pipeline

    /// A Ready whose writes are in a WAL batch not yet durable. No other Ready is taken
    /// from the member until it is completed (the core requires advance before ready).
    var pendingReady: Ready?
    var isDirty = false
    /// Position in the shard's list of ticked replicas, or -1.
    var awakeSlot = -1
    /// Tick of the last request, for idle detection.
    var lastActivity: UInt64 = 0
    /// Tick at which it quiesced (for dormancy), when quiesced.
    var quiescedAt: UInt64 = 0
    /// When a campaign is scheduled (awaitingCampaign).
    var campaignAt: UInt64 = 0
    /// Node slots whose members were ignored when the group quiesced: wake when they return.
    var laggingNodes: [Int] = []
    /// The node slot of the known leader, or -1.
    var leaderNode = -1
    /// Until this tick vote requests are dropped: set for an election timeout when the
    /// replica is loaded at start.
    var refuseVotesUntil: UInt64 = 0
    /// Leader lease for reads: a ReadIndex round issued at time S and confirmed by a quorum
    /// in `leaseTerm` lets this leader answer reads without a round until S plus half an
    /// election timeout, in monotonic nanoseconds (see docs/HOST.md: followers refuse votes,
    /// and liveness forgets a leader, only an election timeout after they last heard from
    /// its node).
    var leaseTerm = Term.zero
    var leaseUntil = 0

    // MARK: Apply

    /// Last index handed to the apply worker (the consensus core's applied index).
    var handedOut: LogIndex
    /// Last index the state machine applied.
    var applied: LogIndex
    var applyJobsInFlight = 0

    // MARK: Requests

    var proposals: [PendingProposal] = []
    var reads: [PendingRead] = []
    var hasRequests: Bool { !proposals.isEmpty || !reads.isEmpty }

    init(
        key: ReplicaKey, group: GroupID, storageSlot: Int, storageName: StorageName, stateMachine: any StateMachine,
        stableLog: WALStableLog, members: [MemberID], memberNodes: [Int], applied: LogIndex
    ) {
        self.key = key
        self.group = group
        self.storageSlot = storageSlot
        self.storageName = storageName
        self.stateMachine = stateMachine
        self.stableLog = stableLog
        self.members = members
        self.memberNodes = memberNodes
        self.handedOut = applied
        self.applied = applied
        self.residency = .quiesced
    }

    /// The node slot hosting `member`, or -1.
    func nodeSlot(of member: MemberID) -> Int {
        for i in members.indices where members[i] == member { return memberNodes[i] }
        return -1
    }

    /// The leader known from the member or the dormant record.
    var knownLeader: MemberID { node?.leader ?? suspended?.lead ?? .none }
}

/// What an apply worker reports back to a replica's shard after a job.
struct AppliedReport {
    let replica: Replica
    let through: LogIndex
    let confState: ConfState?
    let entries: Int
    let failure: String?
}

/// Committed entries for one replica's state machine, with the requests they answer.
final class ApplyJob: @unchecked Sendable {
    let replica: Replica
    let entries: [Entry]
    /// The replica's handed-out index when the job was made (its last entry, or the index
    /// reads wait for); the apply worker reports it back.
    let through: LogIndex
    /// Proposals answered by these entries: success when the term matched.
    var proposals: [(promise: Promise<LogIndex>, result: Result<LogIndex, HostError>)] = []
    /// Reads that may be served once these entries are applied.
    var reads: [(promise: Promise<LogIndex>, index: LogIndex)] = []
    /// The configuration after these entries, when one of them changed it.
    var confState: ConfState?
    let bytes: Int

    init(replica: Replica, entries: [Entry], through: LogIndex) {
        self.replica = replica
        self.entries = entries
        self.through = through
        var total = 0
        for entry in entries { total += entry.payloadSize }
        bytes = total
    }

}

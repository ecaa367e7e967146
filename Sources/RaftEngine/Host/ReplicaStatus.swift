import RaftConsensus

/// Where a replica's in-memory state is.
public enum ReplicaResidency: String, Hashable, Sendable {
    /// Ticked, may send and receive.
    case awake
    /// Not ticked; its consensus state is in memory.
    case quiesced
    /// Shrunk to a compact record; rebuilt from the log on the next request or message.
    case dormant
    /// Waiting for its turn to campaign after its leader's node was declared dead.
    case awaitingCampaign
    /// Stopped after a storage or state machine failure.
    case failed
}

/// A replica's state as `NodeHost.status(of:)` reports it.
public struct ReplicaStatus: Hashable, Sendable, CustomStringConvertible {
    public var replica: ReplicaKey
    public var group: GroupID
    public var storage: StorageName
    public var role: RaftRole
    public var term: Term
    public var leader: MemberID
    public var commit: LogIndex
    /// Handed to the state machine (may still be in an apply worker's queue).
    public var handedToApply: LogIndex
    /// Applied by the state machine.
    public var applied: LogIndex
    public var lastIndex: LogIndex
    /// The first index the log still holds (earlier ones were compacted).
    public var firstIndex: LogIndex = .zero
    public var residency: ReplicaResidency
    public var mode = ReplicationMode.raft
    /// The voters (both majorities while joint) and learners of its configuration, as
    /// this replica knows it.
    public var voters: [MemberID] = []
    public var votersOutgoing: [MemberID] = []
    public var learners: [MemberID] = []
    /// Members of the group: voters of both configurations and learners, each once.
    public var members: Int { Set(voters + votersOutgoing + learners).count }
    /// The node hosting each member this replica knows the node of (itself included).
    public var memberNodes: [MemberID: NodeID] = [:]
    /// On a leader: each member's match index (what it holds durably, as far as the leader
    /// knows). Empty elsewhere.
    public var matchIndex: [MemberID: LogIndex] = [:]
    /// On a leader: when its leadership began, in `MonotonicClock.system` nanoseconds
    /// (CLOCK_BOOTTIME, comparable across processes on one machine). Nil elsewhere.
    public var leaderSinceNanoseconds: Int?
    /// The ticks its shard has handled (diagnostics: a replica waiting for a tick slot).
    public var shardTick: UInt64 = 0
    /// The tick its campaign slot is due at, when it waits for one.
    public var campaignAtTick: UInt64?

    public var description: String {
        "\(replica) \(group)@\(storage) \(role) term=\(term) leader=\(leader) commit=\(commit) applied=\(applied) last=\(lastIndex) \(residency.rawValue) \(mode) tick=\(shardTick)\(campaignAtTick.map { " campaign at tick \($0)" } ?? "")"
    }
}

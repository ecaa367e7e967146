/// How read-only queries are linearized.
public enum ReadOnlyOption: Hashable, Sendable {
    /// ReadIndex: the leader confirms it is still leader with a heartbeat round (safe).
    case safe
    /// Lease: the leader trusts that no other leader can exist within the election timeout.
    /// Correct only with bounded clock drift, and only with CheckQuorum enabled.
    case leaseBased
}

/// Static configuration of one member of one group.
public struct RaftConfig: Sendable {
    public var id: MemberID
    /// Ticks without hearing from a leader before campaigning (randomized in [n, 2n)).
    public var electionTick = 10
    /// Ticks between leader heartbeats. Must be smaller than `electionTick`.
    public var heartbeatTick = 1
    /// Index the application has already applied when restarting.
    public var applied = LogIndex.zero
    /// Probe for votes without disturbing terms before campaigning (thesis §9.6).
    public var preVote = true
    /// Leader steps down if it did not hear from a quorum within an election timeout.
    public var checkQuorum = true
    /// Upper bound on payload bytes of one append message (at least one entry is always sent).
    public var maxSizePerMsg = 1 << 20
    /// Max appends in flight per follower.
    public var maxInflightMsgs = 256
    /// Max payload bytes in flight per follower (0 = unlimited).
    public var maxInflightBytes = 0
    /// Proposals are refused once this many payload bytes are appended but uncommitted (0 = unlimited).
    public var maxUncommittedEntriesSize = 0
    /// Cap on payload bytes of committed entries in one Ready.
    public var maxCommittedSizePerReady = 1 << 26
    public var readOnlyOption = ReadOnlyOption.safe
    /// Followers forward proposals to the leader. Off by default: the caller usually wants to
    /// redirect clients itself, and forwarded proposals can be silently lost.
    public var forwardProposals = false
    /// A periodic heartbeat skips a follower in replicate state that acknowledged an append
    /// since the previous one (the appends carried term and commit). Cuts the message count
    /// of busy groups nearly in half; a follower whose appends stopped arriving gets the next
    /// heartbeat, one interval later than without it. Off by default (the golden traces).
    public var skipHeartbeatsToAckingFollowers = false
    /// Seed for the election-timeout jitter.
    public var seed: UInt64 = 0

    public init(id: MemberID) { self.id = id }

    /// Checks the configuration; returns a reason when invalid.
    public func validate() -> String? {
        if id == .none { return "member id must not be zero" }
        if heartbeatTick <= 0 { return "heartbeatTick must be positive" }
        if electionTick <= heartbeatTick { return "electionTick must exceed heartbeatTick" }
        if maxInflightMsgs <= 0 { return "maxInflightMsgs must be positive" }
        if readOnlyOption == .leaseBased && !checkQuorum { return "lease-based reads require checkQuorum" }
        return nil
    }
}

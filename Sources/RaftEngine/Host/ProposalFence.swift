import RaftConsensus

/// Conditions on a proposal, for a caller that verified it against the effects of its
/// earlier proposals (the partition writer): the log must hold it only after them.
///
/// - `term`: refused as `lostLeadership` unless the replica leads in exactly this term
///   (a leader never truncates its log within its term, so earlier proposals appended in
///   it stay ahead of this one).
/// - `epoch`: once a fenced proposal of the replica is not appended (dropped by the core:
///   over the uncommitted limit, a transfer in progress), every later one with an epoch at
///   or below it is refused too, until the caller moves to a higher epoch (after catching
///   up). Without this, a proposal verified on top of a dropped one could commit without it.
public struct ProposalFence: Hashable, Sendable {
    public var term: Term
    public var epoch: UInt64

    public init(term: Term, epoch: UInt64) {
        self.term = term
        self.epoch = epoch
    }
}

/// What a quiesced member keeps when its host shrinks it to a dormant record, so that it
/// can be rebuilt later from its stable log without an election.
///
/// Resuming is safe because nothing can have happened to the group in between: a quiesced
/// member only stays quiesced while it receives nothing but quiescing heartbeats (anything
/// else wakes it, and the host rebuilds a dormant member before it steps any message). A
/// leader resumes in the same term with the same durable log, so it is exactly the leader
/// that quiesced; the members it knew to be caught up are still caught up (a durable log
/// does not shrink), and every other member is probed.
public struct SuspendedState: Hashable, Sendable, CustomStringConvertible {
    /// The term the member was in (it must equal the stable hard state's term on resume).
    public var term: Term
    /// The commit index it knew (at most the stable last index).
    public var commit: LogIndex
    /// The leader it followed, `.none` if unknown, or itself.
    public var lead: MemberID
    /// True when the member was the leader.
    public var isLeader: Bool
    /// Leader only: members known to hold the whole log when it was suspended.
    public var caughtUp: [MemberID]
    /// Leader only: it started a leadership transfer in this term (no lease reads).
    public var transferStarted: Bool

    public init(
        term: Term, commit: LogIndex, lead: MemberID, isLeader: Bool, caughtUp: [MemberID],
        transferStarted: Bool = false
    ) {
        self.term = term
        self.commit = commit
        self.lead = lead
        self.isLeader = isLeader
        self.caughtUp = caughtUp
        self.transferStarted = transferStarted
    }

    public var description: String {
        "term=\(term) commit=\(commit) lead=\(lead)" + (isLeader ? " leader caught-up=\(caughtUp)" : "")
    }
}

extension Raft {
    /// The state to keep for a dormant record, or nil if the member is not quiesced.
    func suspendedState() -> SuspendedState? {
        guard quiesced, msgs.isEmpty, msgsAfterPersist.isEmpty, readStates.isEmpty else { return nil }
        guard log.unstable.entries.isEmpty, log.unstable.snapshot == nil else { return nil }
        switch role {
        case .leader:
            let last = log.lastIndex
            var caught: [MemberID] = []
            tracker.forEach { mid, pr in if mid != id && pr.match == last { caught.append(mid) } }
            return SuspendedState(
                term: term, commit: log.committed, lead: id, isLeader: true, caughtUp: caught,
                transferStarted: transferStartedInTerm)
        case .follower:
            return SuspendedState(term: term, commit: log.committed, lead: lead, isLeader: false, caughtUp: [])
        case .candidate, .preCandidate:
            return nil
        }
    }

    /// Rebuilds the quiesced member described by `state` (called right after init).
    func resume(_ state: SuspendedState) {
        precondition(state.term == term, "resuming term \(state.term) over stable term \(term)")
        precondition(state.commit <= log.lastIndex, "resumed commit \(state.commit) beyond last \(log.lastIndex)")
        log.commitTo(state.commit)
        if state.isLeader && promotable {
            precondition(vote == id, "a resumed leader must have voted for itself in its term")
            reset(term)
            lead = id
            role = .leader
            let last = log.lastIndex
            tracker.forEach { mid, pr in
                if mid == id || state.caughtUp.contains(mid) {
                    _ = pr.maybeUpdate(last)
                    pr.knownCommit = log.committed
                    pr.becomeReplicate()
                }
            }
            // Conf changes at or below applied are done (quiescing required that).
            pendingConfIndex = log.applied
            transferStartedInTerm = state.transferStarted
        } else if !state.isLeader {
            lead = state.lead
        }
        electionElapsed = 0
        quiesced = true
    }
}

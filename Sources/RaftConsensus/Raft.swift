/// The consensus state machine of one member of one group. Pure: it reacts to ticks,
/// messages and proposals by changing state and queueing messages; `RawNode` turns that into
/// `Ready` batches. Not thread-safe; the caller serializes access.
///
/// Invariants (checked with `precondition`):
/// - at most one vote per term (`vote` only changes when `term` changes or from `.none`);
/// - the commit index never decreases and never exceeds the last index;
/// - committed entries are never truncated;
/// - the leader counts itself towards a quorum only for entries it has persisted.
final class Raft {
    let id: MemberID
    let config: RaftConfig
    var term: Term = .zero
    var vote: MemberID = .none
    var lead: MemberID = .none
    var role: RaftRole = .follower
    var log: RaftLog
    var tracker: ProgressTracker
    var rng: SplitMix64

    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0

    /// Target of an ongoing leadership transfer.
    var leadTransferee: MemberID = .none
    /// Index of the latest conf change the leader appended; another may not be proposed
    /// until the application has applied past it.
    var pendingConfIndex: LogIndex = .zero
    /// Payload bytes appended by this leader and not yet handed out as committed.
    var uncommittedSize = 0

    var readOnly = ReadOnlyQueue()
    /// ReadIndex requests that arrived before the leader committed an entry in its term.
    var pendingReadIndexMessages: [Message] = []
    var readStates: [ReadState] = []

    var msgs: [Message] = []
    var msgsAfterPersist: [Message] = []
    /// Term of the last hard state the caller reported durable.
    var durableTerm: Term = .zero

    /// Quiesced: ticks are ignored until something wakes us.
    var quiesced = false
    /// A leadership transfer was started in this term: another member may have been told
    /// to campaign at once (bypassing every lease), so no lease read may be served any
    /// more in this term.
    var transferStartedInTerm = false

    init(config: RaftConfig, log stable: any StableLog) {
        if let problem = config.validate() { preconditionFailure("invalid RaftConfig: \(problem)") }
        self.id = config.id
        self.config = config
        self.log = RaftLog(stable: stable, applied: config.applied, maxApplyBytes: config.maxCommittedSizePerReady)
        self.tracker = ProgressTracker(maxInflight: config.maxInflightMsgs, maxInflightBytes: config.maxInflightBytes)
        self.rng = SplitMix64(seed: config.seed ^ (config.id.rawValue &* 0x9E37_79B9_7F4A_7C15))
        let (hs, cs) = stable.initialState()
        let (cfg, prs) = ConfChanger.restore(cs, tracker: tracker, lastIndex: log.lastIndex)
        tracker.apply(config: cfg, progress: prs)
        if hs != .empty {
            // A commit below the snapshot index is harmless (the snapshot is committed anyway).
            precondition(
                hs.commit <= log.lastIndex, "hard state commit \(hs.commit) beyond last index \(log.lastIndex)")
            log.commitTo(hs.commit)
            term = hs.term
            vote = hs.vote
        }
        durableTerm = term
        becomeFollower(term, lead: .none)
    }

    var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    var softState: SoftState { SoftState(leader: lead, role: role) }
    var isLearner: Bool { tracker.progress(id)?.isLearner ?? false }
    /// Only voters may campaign.
    var promotable: Bool { tracker.isVoter(id) }

    // MARK: - Sending

    /// Queues a message. Leader traffic in an already durable term may leave before the
    /// current Ready is persisted; everything else waits for the persist.
    func send(_ m: Message) {
        var m = m
        // Forwarded transfer requests keep the transferee as sender.
        if m.from == .none { m.from = id }
        switch m.kind {
        case .append, .heartbeat, .snapshot, .timeoutNow:
            if role == .leader && m.term == durableTerm {
                msgs.append(m)
                return
            }
        default:
            break
        }
        msgsAfterPersist.append(m)
    }

    // MARK: - Role transitions

    func resetRandomizedElectionTimeout() {
        randomizedElectionTimeout = config.electionTick + rng.next(below: config.electionTick)
    }

    func reset(_ newTerm: Term) {
        transferStartedInTerm = false
        if newTerm != term {
            term = newTerm
            vote = .none
        }
        lead = .none
        electionElapsed = 0
        heartbeatElapsed = 0
        resetRandomizedElectionTimeout()
        leadTransferee = .none
        tracker.resetVotes()
        tracker.resetAll(next: log.lastIndex.next, selfID: id, selfMatch: log.persistedLastIndex)
        pendingConfIndex = .zero
        uncommittedSize = 0
        readOnly.reset()
        pendingReadIndexMessages = []
        quiesced = false
    }

    func becomeFollower(_ newTerm: Term, lead newLead: MemberID) {
        reset(newTerm)
        lead = newLead
        role = .follower
    }

    func becomePreCandidate() {
        precondition(role != .leader, "leader cannot become pre-candidate")
        // Does not touch term or vote: a pre-election must not disturb anyone.
        tracker.resetVotes()
        lead = .none
        role = .preCandidate
        quiesced = false
    }

    func becomeCandidate() {
        precondition(role != .leader, "leader cannot become candidate")
        reset(term.next)
        vote = id
        role = .candidate
    }

    func becomeLeader() {
        precondition(role == .candidate, "only candidates become leader")
        reset(term)
        lead = id
        role = .leader
        tracker.withProgress(id) { $0.becomeReplicate() }
        // Any conf change in the uncommitted tail might still be pending.
        pendingConfIndex = log.lastIndex
        // The empty entry lets the leader commit everything from earlier terms (§5.4.2).
        let ok = appendEntries([.normal([])])
        precondition(ok, "empty entry must always be accepted")
    }

    // MARK: - Ticks

    func tick() {
        if quiesced { return }
        if role == .leader { tickHeartbeat() } else { tickElection() }
    }

    var pastElectionTimeout: Bool { electionElapsed >= randomizedElectionTimeout }

    private func tickElection() {
        electionElapsed += 1
        if promotable && pastElectionTimeout {
            electionElapsed = 0
            hup(transfer: false)
        }
    }

    private func tickHeartbeat() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTick {
            electionElapsed = 0
            if config.checkQuorum {
                if !tracker.quorumActive(selfID: id) {
                    becomeFollower(term, lead: .none)
                    return
                }
                tracker.forEach { mid, pr in if mid != id { pr.recentActive = false } }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if leadTransferee != .none { leadTransferee = .none }
        }
        if heartbeatElapsed >= config.heartbeatTick {
            heartbeatElapsed = 0
            broadcastHeartbeat(periodic: true)
        }
    }

    // MARK: - Elections

    /// Starts an election (or pre-election) if allowed.
    func hup(transfer: Bool) {
        if role == .leader || !promotable { return }
        if hasUnappliedConfChanges() { return }
        if config.preVote && !transfer {
            campaign(pre: true, transfer: false)
        } else {
            campaign(pre: false, transfer: transfer)
        }
    }

    /// A member must not campaign while a committed conf change is unapplied: it might not
    /// be a voter any more, or the quorum might be different.
    func hasUnappliedConfChanges() -> Bool {
        if log.committed <= log.applied { return false }
        let lo = max(log.applied.next, log.firstIndex)
        guard lo <= log.committed, case .success(let ents) = log.slice(lo, log.committed.next, maxBytes: Int.max) else {
            return false
        }
        return ents.contains { $0.isConfChange }
    }

    func campaign(pre: Bool, transfer: Bool) {
        let kind: MessageKind
        let voteTerm: Term
        if pre {
            becomePreCandidate()
            kind = .preVote
            voteTerm = term.next
        } else {
            becomeCandidate()
            kind = .vote
            voteTerm = term
        }
        for voter in tracker.config.voters.allVoters {
            if voter == id {
                if pollAndResolve(voter, kind: kind.responseKind, granted: true) { return }
                continue
            }
            send(
                Message(
                    kind: kind, from: id, to: voter, term: voteTerm, logTerm: log.lastTerm,
                    index: log.lastIndex, context: transfer ? Message.transferContext : []))
        }
    }

    /// Records a vote and acts on the result. Returns true if the election was decided.
    @discardableResult
    func pollAndResolve(_ from: MemberID, kind: MessageKind, granted: Bool) -> Bool {
        tracker.recordVote(from, granted: granted)
        switch tracker.tallyVotes().result {
        case .won:
            // A commit learned during the election may have demoted us (and been applied):
            // only a voter may lead, and no one campaigns across an unapplied conf change.
            if !promotable || (role == .preCandidate && hasUnappliedConfChanges()) {
                becomeFollower(term, lead: .none)
            } else if role == .preCandidate {
                campaign(pre: false, transfer: false)
            } else {
                becomeLeader()
                broadcastAppend()
            }
            return true
        case .lost:
            becomeFollower(term, lead: .none)
            return true
        case .pending:
            return false
        }
    }
}

extension ProgressTracker {
    /// Forgets all replication state after a term change; only our own match survives.
    mutating func resetAll(next: LogIndex, selfID: MemberID, selfMatch: LogIndex) {
        let fresh = Inflights(capacity: maxInflight, maxBytes: maxInflightBytes)
        forEach { mid, pr in
            let learner = pr.isLearner
            pr = Progress(next: next, inflights: fresh, isLearner: learner)
            if mid == selfID { pr.match = selfMatch }
        }
    }
}

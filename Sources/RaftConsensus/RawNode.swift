/// The public, RawNode-shaped API of one group member. The caller drives it:
///
///     node.tick()                    // on a timer
///     node.step(message)             // for every message from a peer
///     node.propose(bytes)            // client writes
///     while node.hasReady {
///         let rd = node.ready()      // see `Ready` for what to do with it
///         ...persist, send, apply...
///         node.advance(rd)
///     }
///
/// Everything is deterministic given the configuration seed and the sequence of calls.
public final class RawNode {
    let raft: Raft
    private var prevSoftState: SoftState
    private var prevHardState: HardState
    private var readyOutstanding = false

    /// Creates a member over caller-owned storage (which may already hold state: restart).
    public init(config: RaftConfig, log stable: any StableLog) {
        raft = Raft(config: config, log: stable)
        prevSoftState = raft.softState
        prevHardState = stable.initialState().0
    }

    /// Rebuilds a member that was suspended with `RawNode.suspend()` (a dormant group),
    /// over the same stable storage. It comes back quiesced, in the same role and term.
    public convenience init(config: RaftConfig, log stable: any StableLog, resuming state: SuspendedState) {
        self.init(config: config, log: stable)
        raft.resume(state)
        prevSoftState = raft.softState
        prevHardState = raft.hardState
    }

    public var id: MemberID { raft.id }

    // MARK: - Inputs

    /// Advances logical time by one tick.
    public func tick() { raft.tick() }

    /// Feeds a message from a peer. Messages not addressed to us are ignored.
    public func step(_ m: Message) {
        guard m.to == raft.id else { return }
        raft.step(m)
    }

    /// Starts an election now (tests and manual failover).
    public func campaign() {
        raft.wake()
        raft.hup(transfer: false)
    }

    /// Proposes one entry of application data.
    @discardableResult
    public func propose(_ data: [UInt8]) -> ProposalOutcome { proposePayloads([.normal(data)]) }

    /// Proposes several entries at once (appended atomically, or not at all).
    @discardableResult
    public func propose(batch: [[UInt8]]) -> ProposalOutcome { proposePayloads(batch.map { .normal($0) }) }

    /// Proposes a membership change. At most one may be pending.
    @discardableResult
    public func proposeConfChange(_ cc: ConfChange) -> ProposalOutcome { proposePayloads([.confChange(cc)]) }

    private func proposePayloads(_ payloads: [EntryPayload]) -> ProposalOutcome {
        raft.wake()
        switch raft.role {
        case .leader:
            return raft.proposeOnLeader(payloads)
        case .follower:
            guard raft.lead != .none else { return .dropped(.notLeader(knownLeader: .none)) }
            guard raft.config.forwardProposals else { return .dropped(.notLeader(knownLeader: raft.lead)) }
            var next = LogIndex.zero
            let ents = payloads.map { p -> Entry in
                next = next.next
                return Entry(term: .zero, index: next, payload: p)
            }
            raft.send(Message(kind: .propose, from: raft.id, to: raft.lead, entries: ents))
            return .forwarded(to: raft.lead)
        case .candidate, .preCandidate:
            return .dropped(.notLeader(knownLeader: .none))
        }
    }

    /// Requests a linearizable read point. The answer arrives as a `ReadState` with the same
    /// context (which must be unique among pending requests).
    @discardableResult
    public func readIndex(context: [UInt8]) -> ProposalOutcome {
        raft.wake()
        let m = Message(kind: .readIndex, from: raft.id, to: raft.id, context: context)
        switch raft.role {
        case .leader:
            raft.handleReadIndex(m)
            return .accepted
        case .follower where raft.lead != .none:
            var f = m
            f.to = raft.lead
            raft.send(f)
            return .forwarded(to: raft.lead)
        default:
            return .dropped(.notLeader(knownLeader: raft.lead))
        }
    }

    /// Asks the leader to hand leadership to `target` (sent via the leader if we are not it).
    @discardableResult
    public func transferLeadership(to target: MemberID) -> ProposalOutcome {
        raft.wake()
        if raft.role == .leader { return raft.transferLeadership(to: target) }
        guard raft.lead != .none else { return .dropped(.notLeader(knownLeader: .none)) }
        raft.send(Message(kind: .transferLeader, from: target, to: raft.lead))
        return .forwarded(to: raft.lead)
    }

    /// Applies a committed conf change entry; returns the new membership (persist it with
    /// the next snapshot).
    @discardableResult
    public func applyConfChange(_ cc: ConfChange) -> ConfState { raft.applyConfChange(cc) }

    /// The transport could not reach `member`: stop optimistic pipelining to it.
    public func reportUnreachable(_ member: MemberID) {
        guard raft.role == .leader else { return }
        raft.tracker.withProgress(member) { pr in if pr.state == .replicate { pr.becomeProbe() } }
    }

    /// Outcome of sending a snapshot to `member`.
    public func reportSnapshot(_ member: MemberID, succeeded: Bool) {
        guard raft.role == .leader else { return }
        raft.tracker.withProgress(member) { pr in
            guard pr.state == .snapshot else { return }
            if !succeeded { pr.pendingSnapshot = .zero }
            pr.becomeProbe()
            // Wait for the follower's append response (or a heartbeat) before probing again.
            pr.probeSent = true
        }
    }

    // MARK: - Quiescing

    /// See `Raft.isQuiescable`: leader, all caught up, nothing pending.
    public var isQuiescable: Bool { raft.isQuiescable }
    /// Like `isQuiescable`, but members in `down` (on nodes known dead) are not waited for.
    public func isQuiescable(ignoring down: Set<MemberID>) -> Bool { raft.isQuiescable(ignoring: down) }
    /// Whether ticks are currently ignored.
    public var isQuiesced: Bool { raft.quiesced }

    /// A membership change is proposed and not yet applied (a leader counts its whole log
    /// until it has applied it).
    public var hasPendingConfChange: Bool { raft.pendingConfIndex > raft.log.applied }
    /// Quiesces the group (leader only). Returns false if not quiescable. Members in `down`
    /// are not waited for; the caller must wake the group when they come back.
    @discardableResult
    public func quiesce(ignoring down: Set<MemberID> = []) -> Bool { raft.quiesce(ignoring: down) }
    /// Leaves the quiesced state (e.g. when the caller suspects the leader is gone).
    public func wake() { raft.wake() }

    /// A follower that can never campaign (a learner, or a member its configuration does not
    /// name yet) stops its election timer once it has not heard from a leader for an
    /// election timeout: it would tick forever for nothing (a quiescing leader's last
    /// heartbeat may have been lost). Any message wakes it, as any quiesced member.
    /// Returns whether it quiesced now.
    public func quiesceIfIdleNonVoter() -> Bool {
        guard raft.role == .follower, !raft.promotable, !raft.quiesced,
            raft.electionElapsed >= raft.config.electionTick
        else { return false }
        raft.quiesced = true
        raft.electionElapsed = 0
        return true
    }
    /// Forgets the leader (a follower whose leader's node was declared dead): stop refusing
    /// candidates on its behalf and resume ticking. No effect on leaders and candidates.
    public func forgetLeader() { raft.forgetLeader() }

    /// The state to keep when shrinking this quiesced member to a dormant record, or nil if
    /// it cannot be suspended now (not quiesced, a candidate, or work pending). After
    /// suspending, the caller drops the member and rebuilds it with `init(config:log:resuming:)`.
    public func suspend() -> SuspendedState? {
        guard !readyOutstanding, !hasReady else { return nil }
        return raft.suspendedState()
    }

    /// The commit index if this member leads and may answer a read at it once the caller
    /// has confirmed its leadership some other way (a lease the caller keeps): it committed
    /// an entry in its term and started no leadership transfer in it (a transferee
    /// campaigns at once, past every lease). Nil otherwise.
    public var leaderCommitForRead: LogIndex? {
        guard raft.role == .leader, raft.committedEntryInCurrentTerm, !raft.transferStartedInTerm else { return nil }
        return raft.log.committed
    }

    // MARK: - Ready

    /// A snapshot the member took (restored) that a Ready has yet to hand out or advance.
    public var pendingSnapshot: Snapshot? { raft.log.unstable.snapshot }

    /// True if `ready()` would return a non-empty batch.
    public var hasReady: Bool {
        if readyOutstanding { return false }
        if raft.softState != prevSoftState { return true }
        if raft.hardState != prevHardState { return true }
        let u = raft.log.unstable
        if !u.entriesToPersist.isEmpty || u.snapshotToPersist != nil { return true }
        if !raft.msgs.isEmpty || !raft.msgsAfterPersist.isEmpty || !raft.readStates.isEmpty { return true }
        return raft.log.hasNextCommittedEntries
    }

    /// Collects the work to do. Must be followed by `advance(_:)` before the next call.
    public func ready() -> Ready {
        precondition(!readyOutstanding, "ready() called twice without advance()")
        readyOutstanding = true
        var rd = Ready()
        let ss = raft.softState
        if ss != prevSoftState { rd.softState = ss }
        let hs = raft.hardState
        if hs != prevHardState {
            rd.hardState = hs
            rd.mustSync = hs.term != prevHardState.term || hs.vote != prevHardState.vote
        }
        rd.entries = Array(raft.log.unstable.entriesToPersist)
        if !rd.entries.isEmpty { rd.mustSync = true }
        rd.snapshot = raft.log.unstable.snapshotToPersist
        if rd.snapshot != nil { rd.mustSync = true }
        raft.log.acceptUnstableInProgress()
        rd.committedEntries = raft.log.nextCommittedEntries()
        if let last = rd.committedEntries.last {
            raft.log.acceptApplying(last.index)
            raft.reduceUncommittedSize(rd.committedEntries)
        }
        rd.messages = raft.msgs
        rd.messagesAfterPersist = raft.msgsAfterPersist
        raft.msgs = []
        raft.msgsAfterPersist = []
        rd.readStates = raft.readStates
        raft.readStates = []
        return rd
    }

    /// Reports that `rd` was fully handled (persisted, sent, applied).
    public func advance(_ rd: Ready) {
        precondition(readyOutstanding, "advance() without ready()")
        readyOutstanding = false
        if let ss = rd.softState { prevSoftState = ss }
        if let hs = rd.hardState {
            prevHardState = hs
            raft.durableTerm = hs.term
        }
        if let snap = rd.snapshot {
            raft.log.stableSnapshotTo(snap.metadata.index)
            raft.log.snapshotApplied(snap.metadata.index)
        }
        if let last = rd.entries.last {
            raft.log.stableTo(last.index, term: last.term)
            raft.persisted(through: min(last.index, raft.log.persistedLastIndex))
        }
        if let last = rd.committedEntries.last { raft.appliedTo(last.index) }
    }

    // MARK: - Introspection

    /// A snapshot of the member's state.
    public var status: RaftStatus {
        RaftStatus(
            id: raft.id, term: raft.term, vote: raft.vote, lead: raft.lead, role: raft.role,
            commit: raft.log.committed, applied: raft.log.applied, lastIndex: raft.log.lastIndex,
            firstIndex: raft.log.firstIndex, config: raft.tracker.config,
            progress: raft.role == .leader ? raft.tracker.describe() : nil,
            leadTransferee: raft.leadTransferee, quiesced: raft.quiesced)
    }

    /// Current role (cheap; `status` also formats progress text).
    public var role: RaftRole { raft.role }
    /// The leader this member knows (itself when leading), or `.none` (cheap).
    public var leader: MemberID { raft.lead }
    /// Current term.
    public var term: Term { raft.term }
    /// First and last index of the log, and the commit index (cheap).
    public var logBounds: (first: LogIndex, last: LogIndex, commit: LogIndex) {
        (raft.log.firstIndex, raft.log.lastIndex, raft.log.committed)
    }

    /// Entries in `[low, high)` (tests and debugging).
    public func entries(_ low: LogIndex, _ high: LogIndex) -> [Entry] {
        (try? raft.log.slice(low, high, maxBytes: Int.max).get()) ?? []
    }

    /// Progress of `member` as seen by this leader.
    public func progress(of member: MemberID) -> Progress? { raft.tracker.progress(member) }

    /// Current membership.
    public var confState: ConfState { raft.tracker.config.confState }
}

/// Read-only view of a member's state.
public struct RaftStatus: Sendable, CustomStringConvertible {
    public var id: MemberID
    public var term: Term
    public var vote: MemberID
    public var lead: MemberID
    public var role: RaftRole
    public var commit: LogIndex
    public var applied: LogIndex
    public var lastIndex: LogIndex
    public var firstIndex: LogIndex
    public var config: TrackerConfig
    /// Per-member progress text (leaders only).
    public var progress: String?
    public var leadTransferee: MemberID
    public var quiesced: Bool

    public var description: String {
        var s =
            "\(id): \(role) term=\(term) vote=\(vote) lead=\(lead) commit=\(commit) applied=\(applied) last=\(lastIndex) \(config)"
        if leadTransferee != .none { s += " transferring-to=\(leadTransferee)" }
        if quiesced { s += " quiesced" }
        if let p = progress {
            s += "\n" + p.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")
        }
        return s
    }
}

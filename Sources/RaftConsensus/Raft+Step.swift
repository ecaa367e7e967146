extension Raft {
    /// Entry point for every message from a peer.
    func step(_ m: Message) {
        // A commit point carried by any vote answer is a fact, whatever its term and whatever
        // our role now (see `learnCommit`): a lower-term pre-vote reject, a higher-term reject
        // and a late answer all still carry it.
        if m.kind == .voteResponse || m.kind == .preVoteResponse { learnCommit(from: m) }
        if m.term == .zero {
            // Forwarded requests are term-independent.
        } else if m.term > term {
            if m.kind == .vote || m.kind == .preVote {
                let force = m.context == Message.transferContext
                // Leader lease (with CheckQuorum): while we hear from a live leader, ignore
                // candidates, so a partitioned node cannot depose a healthy leader.
                let inLease = config.checkQuorum && lead != .none && electionElapsed < config.electionTick
                // A quiesced member does not tick, so its lease never runs out: a vote request
                // the lease is about to drop wakes it first. A quiesced leader re-announces
                // itself; a follower grants after one election timeout without a leader.
                if !force && inLease && quiesced { wake() }
                if !force && inLease { return }
            }
            switch m.kind {
            case .preVote:
                break  // a pre-vote never changes our term
            case .preVoteResponse where !m.reject:
                break  // granted pre-votes carry the future term; we bump it when we win
            case .append, .heartbeat, .snapshot:
                becomeFollower(m.term, lead: m.from)
            default:
                becomeFollower(m.term, lead: .none)
            }
        } else if m.term < term {
            if (config.checkQuorum || config.preVote) && (m.kind == .heartbeat || m.kind == .append) {
                // A stale leader (e.g. after a partition heals) would otherwise never learn the
                // new term, because PreVote/CheckQuorum stop us from disrupting it with votes.
                send(Message(kind: .appendResponse, from: id, to: m.from, term: term))
            } else if m.kind == .preVote {
                let shared = min(log.committed, m.index)
                send(
                    Message(
                        kind: .preVoteResponse, from: id, to: m.from, term: term, logTerm: log.termOrZero(shared),
                        index: shared, commit: log.committed, reject: true))
            }
            return
        }

        // Stale messages were dropped above and a term change already reset the quiesced flag;
        // anything else that is not quiesce traffic wakes us.
        wakeIfNeeded(by: m)
        switch m.kind {
        case .vote, .preVote:
            handleVoteRequest(m)
        default:
            switch role {
            case .leader: stepLeader(m)
            case .candidate, .preCandidate: stepCandidate(m)
            case .follower: stepFollower(m)
            }
        }
    }

    private func handleVoteRequest(_ m: Message) {
        // We can vote for m.from if we already did, or have not voted and know no leader this
        // term; a pre-vote for a future term is always considered.
        let canVote = vote == m.from || (vote == .none && lead == .none) || (m.kind == .preVote && m.term > term)
        // Every answer also shares a committed position the candidate can verify: the entry at
        // min(our commit, candidate's last index). See `learnCommit`.
        let shared = min(log.committed, m.index)
        let sharedTerm = log.termOrZero(shared)
        if canVote && log.isUpToDate(lastIndex: m.index, term: m.logTerm) {
            // Grants echo the request's term so the (pre-)candidate counts them.
            send(
                Message(
                    kind: m.kind.responseKind, from: id, to: m.from, term: m.term, logTerm: sharedTerm,
                    index: shared, commit: log.committed))
            if m.kind == .vote {
                electionElapsed = 0
                vote = m.from
            }
        } else {
            send(
                Message(
                    kind: m.kind.responseKind, from: id, to: m.from, term: term, logTerm: sharedTerm,
                    index: shared, commit: log.committed, reject: true))
        }
    }

    /// Commit indexes are facts, so a (pre-)candidate may adopt one from any voter when it
    /// holds the very same entry (same index and term ⇒ same prefix, by Log Matching).
    /// Without this, a group can deadlock: e.g. the leader commits a "leave joint" entry,
    /// is demoted by it and crashes before the others learn the commit; they stay in the
    /// joint config and need the ex-leader's vote, which it refuses (its log is longer) and
    /// it may not campaign itself as a learner. Found by the simulator (seed 21315, no
    /// CheckQuorum). Learning the commit lets them apply the change and elect among themselves.
    func learnCommit(from m: Message) {
        guard m.index > log.committed, m.index > .zero, log.matchTerm(m.index, m.logTerm) else { return }
        log.commitTo(m.index)
    }

    private func stepCandidate(_ m: Message) {
        let myResponse: MessageKind = role == .preCandidate ? .preVoteResponse : .voteResponse
        switch m.kind {
        case .append:
            becomeFollower(m.term, lead: m.from)
            handleAppend(m)
        case .heartbeat:
            becomeFollower(m.term, lead: m.from)
            handleHeartbeat(m)
        case .snapshot:
            becomeFollower(m.term, lead: m.from)
            handleSnapshot(m)
        case myResponse:
            pollAndResolve(m.from, kind: m.kind, granted: !m.reject)
        default:
            break  // proposals are refused by RawNode; TimeoutNow is meaningless here
        }
    }

    private func stepFollower(_ m: Message) {
        switch m.kind {
        case .append:
            electionElapsed = 0
            lead = m.from
            handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            lead = m.from
            handleHeartbeat(m)
        case .snapshot:
            electionElapsed = 0
            lead = m.from
            handleSnapshot(m)
        case .timeoutNow:
            // The leader asked us to take over: skip PreVote and the lease check.
            hup(transfer: true)
        case .readIndexResponse:
            readStates.append(ReadState(index: m.index, context: m.context))
        case .transferLeader, .readIndex:
            // Forward towards the leader if we know one.
            if lead != .none {
                var f = m
                f.to = lead
                send(f)
            }
        case .propose:
            if config.forwardProposals && lead != .none {
                var f = m
                f.to = lead
                send(f)
            }
        default:
            break
        }
    }

    // MARK: - Follower handlers

    func handleAppend(_ m: Message) {
        if m.index < log.committed {
            // Everything up to our commit is known to match; tell the leader.
            send(
                Message(
                    kind: .appendResponse, from: id, to: m.from, term: term, index: log.committed, commit: log.committed
                ))
            return
        }
        if let lastNew = log.maybeAppend(index: m.index, logTerm: m.logTerm, commit: m.commit, entries: m.entries) {
            send(
                Message(kind: .appendResponse, from: id, to: m.from, term: term, index: lastNew, commit: log.committed))
            return
        }
        // Mismatch: suggest where the leader should probe next (fast back-off). The hint is the
        // largest index whose term is ≤ the leader's term at m.index.
        let (hintIndex, hintTerm) = log.findConflictByTerm(min(m.index, log.lastIndex), m.logTerm)
        send(
            Message(
                kind: .appendResponse, from: id, to: m.from, term: term, logTerm: hintTerm,
                index: m.index, commit: log.committed, reject: true, rejectHint: hintIndex))
    }

    func handleHeartbeat(_ m: Message) {
        log.commitTo(m.commit)
        send(
            Message(
                kind: .heartbeatResponse, from: id, to: m.from, term: term, commit: log.committed, context: m.context))
        if m.quiesce { quiesced = true }
    }

    func handleSnapshot(_ m: Message) {
        guard let snap = m.snapshot else { return }
        if restore(snap) {
            send(
                Message(
                    kind: .appendResponse, from: id, to: m.from, term: term, index: log.lastIndex, commit: log.committed
                ))
        } else {
            send(
                Message(
                    kind: .appendResponse, from: id, to: m.from, term: term, index: log.committed, commit: log.committed
                ))
        }
    }

    /// Installs a leader's snapshot. Returns false if it is stale or our log already has it.
    func restore(_ snap: Snapshot) -> Bool {
        let meta = snap.metadata
        if meta.index <= log.committed { return false }
        let cs = meta.confState
        // Note: we accept a snapshot whose configuration does not include us. That happens
        // when a member is re-added after the leader's latest snapshot was taken; the entries
        // following the snapshot re-add it. Refusing would livelock catch-up (found by the
        // simulator). Without being a voter in the restored config we simply do not campaign.
        if log.matchTerm(meta.index, meta.term) {
            // Fast-forward: our log already contains the snapshot's last entry.
            log.commitTo(meta.index)
            return false
        }
        log.restore(snap)
        let (cfg, prs) = ConfChanger.restore(cs, tracker: tracker, lastIndex: log.lastIndex)
        tracker.apply(config: cfg, progress: prs)
        return true
    }

    // MARK: - Quiescing

    /// A quiesced member wakes on any message except the quiescing heartbeat itself and, on
    /// the leader, the acknowledgements such heartbeats produce.
    private func wakeIfNeeded(by m: Message) {
        guard quiesced else { return }
        if m.kind == .heartbeat && m.quiesce { return }
        if role == .leader && (m.kind == .heartbeatResponse || m.kind == .appendResponse) { return }
        wake()
    }

    /// Leaves the quiesced state. The leader re-announces itself so followers resume too.
    func wake() {
        guard quiesced else { return }
        quiesced = false
        electionElapsed = 0
        heartbeatElapsed = 0
        if role == .leader { broadcastHeartbeat() }
    }
}

extension Raft {
    /// What `cc` would make of the current configuration (validation and apply agree by
    /// construction: both ask this).
    func outcome(of cc: ConfChange) -> ConfChanger.Outcome {
        var changer = ConfChanger(tracker: tracker, lastIndex: log.lastIndex)
        if cc.isLeaveJoint { return changer.leaveJoint() }
        if cc.entersJoint.joint { return changer.enterJoint(autoLeave: cc.entersJoint.autoLeave, cc.changes) }
        return changer.simple(cc.changes)
    }

    /// Applies a committed conf change and returns the resulting membership. Invalid changes
    /// (impossible if proposed through this core) leave the configuration unchanged on every
    /// replica alike, keeping replicas deterministic.
    func applyConfChange(_ cc: ConfChange) -> ConfState {
        guard case .success(let (cfg, prs)) = outcome(of: cc) else { return tracker.config.confState }
        tracker.apply(config: cfg, progress: prs)
        guard role == .leader else { return cfg.confState }
        if tracker.progress(id).map({ $0.isLearner }) ?? true {
            // Removed or demoted: a leader must be a voter. Step down; the rest elect anew.
            becomeFollower(term, lead: .none)
            return cfg.confState
        }
        if leadTransferee != .none && !tracker.isVoter(leadTransferee) { leadTransferee = .none }
        // The quorum may have changed: commit may advance, and new members need appends.
        if maybeCommit() {
            broadcastAppend()
        } else {
            // Members we never heard from (just added) get a probe right away.
            for mid in tracker.ids where mid != id {
                _ = maybeSendAppend(to: mid, sendIfEmpty: tracker.progress(mid)?.match == .zero)
            }
        }
        return cfg.confState
    }

    /// The application applied through `index`. Drives the automatic leave of a joint config.
    func appliedTo(_ index: LogIndex) {
        log.appliedTo(index)
        guard role == .leader, tracker.config.voters.isJoint, tracker.config.autoLeave,
            index >= pendingConfIndex
        else { return }
        // Leaving is never refused by size limits, or the group could stay joint forever.
        if appendEntries([.confChange(.leaveJoint)], bypassLimit: true) {
            pendingConfIndex = log.lastIndex
            broadcastAppend()
        }
    }

    // MARK: - Quiescing

    /// True if the leader may stop ticking: every member not in `down` has everything and
    /// knows the commit index, and nothing is pending. Members in `down` (on nodes the
    /// caller's liveness declared dead) are not waited for: a dead follower must not keep
    /// every group it belongs to awake; the caller wakes the group when the node returns.
    ///
    /// A group with lease-based reads never quiesces: the lease rests on CheckQuorum, which
    /// runs on the leader's ticks, and a quiesced leader does not tick, so it would go on
    /// answering reads from a lease nobody confirms while a partition elects another leader.
    func isQuiescable(ignoring down: Set<MemberID>) -> Bool {
        guard config.readOnlyOption == .safe else { return false }
        guard role == .leader, leadTransferee == .none, readOnly.isEmpty, pendingReadIndexMessages.isEmpty else {
            return false
        }
        guard log.unstable.entries.isEmpty, log.unstable.snapshot == nil else { return false }
        let last = log.lastIndex
        guard log.committed == last, log.applied == last, pendingConfIndex <= log.applied else { return false }
        guard !tracker.config.voters.isJoint, msgs.isEmpty, msgsAfterPersist.isEmpty else { return false }
        guard committedEntryInCurrentTerm else { return false }
        for mid in tracker.ids {
            guard let pr = tracker.progress(mid) else { return false }
            if mid != id && down.contains(mid) { continue }
            if pr.match != last { return false }
            if mid != id && (pr.knownCommit != log.committed || pr.inflights.count > 0 || pr.state != .replicate) {
                return false
            }
        }
        // A quorum must hold everything, or the group would stop with nothing committable.
        return tracker.config.voters.voteResult { mid in
            mid == id || (!down.contains(mid) && tracker.progress(mid)?.match == last)
        } == .won
    }

    var isQuiescable: Bool { isQuiescable(ignoring: []) }

    /// Quiesces the group if possible: tells followers to stop ticking.
    func quiesce(ignoring down: Set<MemberID> = []) -> Bool {
        guard isQuiescable(ignoring: down) else { return false }
        broadcastHeartbeat(quiesce: true)
        quiesced = true
        // Idle groups keep no replication buffers.
        tracker.forEach { _, pr in pr.inflights.releaseStorage() }
        return true
    }

    /// A follower that learns its leader is gone (the node hosting it was declared dead)
    /// forgets it, so it no longer refuses candidates on the leader's behalf, and resumes
    /// ticking. Leaders and candidates are not affected.
    func forgetLeader() {
        guard role == .follower else { return }
        lead = .none
        if quiesced {
            wake()
        } else {
            electionElapsed = 0
        }
    }
}

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

    /// True if the leader may stop ticking: every member has everything and knows the commit
    /// index, and nothing is pending.
    var isQuiescable: Bool {
        guard role == .leader, leadTransferee == .none, readOnly.isEmpty, pendingReadIndexMessages.isEmpty else {
            return false
        }
        guard log.unstable.entries.isEmpty, log.unstable.snapshot == nil else { return false }
        let last = log.lastIndex
        guard log.committed == last, log.applied == last, pendingConfIndex <= log.applied else { return false }
        guard !tracker.config.voters.isJoint, msgs.isEmpty, msgsAfterPersist.isEmpty else { return false }
        for mid in tracker.ids {
            guard let pr = tracker.progress(mid) else { return false }
            if pr.match != last { return false }
            if mid != id && (pr.knownCommit != log.committed || pr.inflights.count > 0 || pr.state != .replicate) {
                return false
            }
        }
        return true
    }

    /// Quiesces the group if possible: tells followers to stop ticking.
    func quiesce() -> Bool {
        guard isQuiescable else { return false }
        broadcastHeartbeat(quiesce: true)
        quiesced = true
        return true
    }
}

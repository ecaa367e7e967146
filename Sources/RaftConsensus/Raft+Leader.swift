extension Raft {
    // MARK: - Appending on the leader

    /// Appends payloads as new entries of the current term. Returns false (appending nothing)
    /// if the uncommitted-size limit would be exceeded.
    func appendEntries(_ payloads: [EntryPayload], bypassLimit: Bool = false) -> Bool {
        var next = log.lastIndex.next
        var ents: [Entry] = []
        ents.reserveCapacity(payloads.count)
        var size = 0
        for p in payloads {
            let e = Entry(term: term, index: next, payload: p)
            size += e.payloadSize
            ents.append(e)
            next = next.next
        }
        let limit = config.maxUncommittedEntriesSize
        // An empty tail always accepts one batch, however large, so progress is possible.
        if !bypassLimit && limit > 0 && uncommittedSize > 0 && size > 0 && uncommittedSize + size > limit {
            return false
        }
        uncommittedSize += size
        log.append(ents[...])
        return true
    }

    /// Committed entries were handed to the application; they no longer count as uncommitted.
    func reduceUncommittedSize(_ ents: [Entry]) {
        guard role == .leader, uncommittedSize > 0 else { return }
        var s = 0
        for e in ents { s += e.payloadSize }
        uncommittedSize = max(0, uncommittedSize - s)
    }

    /// Proposal path on the leader (local or forwarded).
    func proposeOnLeader(_ payloads: [EntryPayload]) -> ProposalOutcome {
        precondition(role == .leader)
        if payloads.isEmpty { return .dropped(.ignored) }
        if tracker.progress(id) == nil { return .dropped(.removed) }
        if leadTransferee != .none { return .dropped(.transferInProgress) }
        var confIndex: LogIndex?
        for (i, p) in payloads.enumerated() {
            guard case .confChange(let cc) = p else { continue }
            if pendingConfIndex > log.applied || confIndex != nil { return .dropped(.confChangeInProgress) }
            if let err = validate(cc) { return .dropped(.invalidConfChange(err)) }
            confIndex = LogIndex(log.lastIndex.rawValue + UInt64(i) + 1)
        }
        guard appendEntries(payloads) else { return .dropped(.uncommittedLimitExceeded) }
        if let ci = confIndex { pendingConfIndex = ci }
        broadcastAppend()
        return .appended(index: log.lastIndex, term: term)
    }

    /// Dry-runs a conf change against the current configuration.
    func validate(_ cc: ConfChange) -> ConfChangeError? {
        if case .failure(let e) = outcome(of: cc) { return e }
        return nil
    }

    // MARK: - Replication

    /// Sends appends to every other member that is not paused.
    func broadcastAppend() {
        for mid in tracker.ids where mid != id { _ = maybeSendAppend(to: mid, sendIfEmpty: true) }
    }

    func sendAppend(to mid: MemberID) { _ = maybeSendAppend(to: mid, sendIfEmpty: true) }

    /// Sends the next append (or a snapshot) to `mid`. Returns whether a message was sent.
    func maybeSendAppend(to mid: MemberID, sendIfEmpty: Bool) -> Bool {
        guard let pr = tracker.progress(mid), !pr.isPaused else { return false }
        let prevIndex = pr.next.previous
        let prevTerm = log.term(at: prevIndex)
        let ents = log.entries(from: pr.next, maxBytes: config.maxSizePerMsg)
        guard case .success(let pt) = prevTerm, case .success(let entries) = ents else {
            return sendSnapshot(to: mid, recentActive: pr.recentActive)
        }
        if entries.isEmpty && !sendIfEmpty { return false }
        var bytes = 0
        for e in entries { bytes += e.payloadSize }
        send(
            Message(
                kind: .append, from: id, to: mid, term: term, logTerm: pt, index: prevIndex,
                entries: entries, commit: log.committed))
        tracker.withProgress(mid) {
            $0.sentEntries(count: entries.count, lastIndex: entries.last?.index ?? prevIndex, bytes: bytes)
        }
        return true
    }

    /// The follower is behind our first index: ship the storage snapshot.
    private func sendSnapshot(to mid: MemberID, recentActive: Bool) -> Bool {
        // Do not burn a snapshot on a member we have not heard from.
        if !recentActive { return false }
        guard case .success(let snap) = log.stable.snapshot(), !snap.isEmpty else { return false }
        send(Message(kind: .snapshot, from: id, to: mid, term: term, snapshot: snap))
        tracker.withProgress(mid) { $0.becomeSnapshot(snap.metadata.index) }
        return true
    }

    func sendHeartbeat(to mid: MemberID, context: [UInt8], quiesce: Bool = false) {
        // Never tell a member to commit past what it is known to hold.
        let match = tracker.progress(mid)?.match ?? .zero
        send(
            Message(
                kind: .heartbeat, from: id, to: mid, term: term, commit: min(match, log.committed),
                context: context, quiesce: quiesce))
    }

    /// Sends a heartbeat to every other member. A periodic one skips streamed-to members that
    /// acknowledged an append since the last periodic heartbeat, unless it carries a read
    /// context.
    func broadcastHeartbeat(quiesce: Bool = false, periodic: Bool = false) {
        let ctx = readOnly.lastContext ?? []
        let skipBusy = periodic && ctx.isEmpty && !quiesce && config.skipHeartbeatsToAckingFollowers
        var skipped: [MemberID] = []
        tracker.forEach { mid, pr in
            // Only a follower we stream to (replicate state) and that answered an append
            // since the last one: a probed or silent one needs the heartbeat's answer.
            if mid != id && skipBusy && pr.ackedSinceHeartbeat && pr.state == .replicate { skipped.append(mid) }
            pr.ackedSinceHeartbeat = false
        }
        for mid in tracker.ids where mid != id && !skipped.contains(mid) {
            sendHeartbeat(to: mid, context: ctx, quiesce: quiesce)
        }
    }

    /// Advances the commit index from the tracker; true if it moved.
    func maybeCommit() -> Bool {
        let wasCommittedInTerm = committedEntryInCurrentTerm
        guard log.maybeCommit(tracker.committed(), term: term) else { return false }
        if !wasCommittedInTerm && committedEntryInCurrentTerm { releasePendingReadIndexMessages() }
        return true
    }

    var committedEntryInCurrentTerm: Bool { log.termOrZero(log.committed) == term }

    /// The caller made entries through `index` durable. The leader may now count itself.
    func persisted(through index: LogIndex) {
        guard role == .leader else { return }
        let updated = tracker.withProgress(id) { $0.maybeUpdate(index) } ?? false
        if updated && maybeCommit() { broadcastAppend() }
    }

    // MARK: - Leader message handling

    func stepLeader(_ m: Message) {
        switch m.kind {
        case .propose:
            _ = proposeOnLeader(m.entries.map(\.payload))
            return
        case .readIndex:
            handleReadIndex(m)
            return
        case .transferLeader:
            _ = transferLeadership(to: m.from)
            return
        default:
            break
        }
        guard tracker.progress(m.from) != nil else { return }
        switch m.kind {
        case .appendResponse:
            handleAppendResponse(m)
        case .heartbeatResponse:
            handleHeartbeatResponse(m)
        default:
            break
        }
    }

    private func handleAppendResponse(_ m: Message) {
        let from = m.from
        tracker.withProgress(from) { pr in
            pr.recentActive = true
            pr.knownCommit = max(pr.knownCommit, m.commit)
            if !m.reject { pr.ackedSinceHeartbeat = true }
        }
        if m.reject {
            var probe = m.rejectHint
            if m.logTerm > .zero { probe = log.findConflictByTerm(m.rejectHint, m.logTerm).0 }
            let retry =
                tracker.withProgress(from) { pr -> Bool in
                    guard pr.maybeDecrTo(rejected: m.index, hint: probe) else { return false }
                    if pr.state == .replicate { pr.becomeProbe() }
                    return true
                } ?? false
            if retry { sendAppend(to: from) }
            return
        }
        let firstIndex = log.firstIndex
        var wasPaused = false
        let updated =
            tracker.withProgress(from) { pr -> Bool in
                wasPaused = pr.isPaused
                guard pr.maybeUpdate(m.index) else { return false }
                switch pr.state {
                case .probe:
                    pr.becomeReplicate()
                case .snapshot where pr.match.next >= firstIndex:
                    // The follower caught up through the snapshot; resume normal replication.
                    pr.becomeProbe()
                    pr.becomeReplicate()
                case .replicate:
                    pr.inflights.freeLE(m.index)
                case .snapshot:
                    break
                }
                return true
            } ?? false
        guard updated else { return }
        if maybeCommit() {
            broadcastAppend()
        } else if wasPaused {
            sendAppend(to: from)
        }
        // Keep the pipeline full.
        while maybeSendAppend(to: from, sendIfEmpty: false) {}
        if from == leadTransferee, tracker.progress(from)?.match == log.lastIndex {
            sendTimeoutNow(to: from)
        }
    }

    private func handleHeartbeatResponse(_ m: Message) {
        let from = m.from
        tracker.withProgress(from) { pr in
            pr.recentActive = true
            pr.probeSent = false
            pr.knownCommit = max(pr.knownCommit, m.commit)
            // A full window with a live follower means acks were lost; free a slot.
            if pr.state == .replicate && pr.inflights.isFull { pr.inflights.freeFirstOne() }
        }
        if let pr = tracker.progress(from), pr.match < log.lastIndex || pr.knownCommit < log.committed {
            sendAppend(to: from)
        }
        guard config.readOnlyOption == .safe, !m.context.isEmpty,
            let acks = readOnly.recvAck(from: from, context: m.context)
        else { return }
        let result = tracker.config.voters.voteResult { mid in mid == id || acks.contains(mid) ? true : nil }
        guard result == .won else { return }
        for read in readOnly.advance(through: m.context) {
            respondToRead(index: read.index, context: read.context, from: read.from)
        }
    }

    // MARK: - Reads

    /// ReadIndex on the leader (local request has `from == id`).
    func handleReadIndex(_ m: Message) {
        if tracker.isSingleton(id) {
            respondToRead(index: log.committed, context: m.context, from: m.from)
            return
        }
        // Until we committed an entry in our term we do not know the real commit index.
        if !committedEntryInCurrentTerm {
            pendingReadIndexMessages.append(m)
            return
        }
        switch config.readOnlyOption {
        case .safe:
            if readOnly.add(index: log.committed, context: m.context, from: m.from) {
                _ = readOnly.recvAck(from: id, context: m.context)
                for mid in tracker.ids where mid != id { sendHeartbeat(to: mid, context: m.context) }
            }
        case .leaseBased:
            respondToRead(index: log.committed, context: m.context, from: m.from)
        }
    }

    private func releasePendingReadIndexMessages() {
        let waiting = pendingReadIndexMessages
        pendingReadIndexMessages = []
        for m in waiting { handleReadIndex(m) }
    }

    private func respondToRead(index: LogIndex, context: [UInt8], from: MemberID) {
        if from == id || from == .none {
            readStates.append(ReadState(index: index, context: context))
        } else {
            send(Message(kind: .readIndexResponse, from: id, to: from, term: term, index: index, context: context))
        }
    }

    // MARK: - Leadership transfer

    func transferLeadership(to target: MemberID) -> ProposalOutcome {
        guard role == .leader else { return .dropped(.notLeader(knownLeader: lead)) }
        guard let pr = tracker.progress(target), !pr.isLearner, target != id else { return .dropped(.ignored) }
        if leadTransferee == target { return .accepted }
        // A newer request replaces an older one; the election timer bounds how long we wait.
        electionElapsed = 0
        leadTransferee = target
        transferStartedInTerm = true
        if pr.match == log.lastIndex { sendTimeoutNow(to: target) } else { sendAppend(to: target) }
        return .accepted
    }

    private func sendTimeoutNow(to target: MemberID) {
        send(Message(kind: .timeoutNow, from: id, to: target, term: term))
    }
}

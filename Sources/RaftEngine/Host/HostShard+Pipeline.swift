import RaftConsensus

extension HostShard {
    // MARK: - Inputs

    /// Steps peer messages into their replicas. Messages for replicas not hosted here are
    /// dropped (counted): a late message for a removed replica, or a misrouted one.
    package func deliver(_ messages: [PeerMessage], fromSlot: Int? = nil) {
        counters.messagesReceived &+= UInt64(messages.count)
        for pm in messages {
            guard let r = replica(ReplicaKey(partition: pm.partition, member: pm.message.to)) else {
                counters.messagesDropped &+= 1
                continue
            }
            // A member this replica cannot place (added by a change its entry has not seen):
            // its answers go to the node the message came from, and the next audit fetches
            // a complete entry.
            if let fromSlot, pm.message.from != .none, r.nodeSlot(of: pm.message.from) == nil, !r.isFailed {
                r.members.removeAll { $0.member == pm.message.from }
                r.members.append(GroupMember(member: pm.message.from, nodeSlot: fromSlot))
                r.members.sort { $0.member < $1.member }
                r.routeStale = true
            }
            // A snapshot message comes only through `deliverSnapshot`, once its data is staged.
            if pm.message.kind == .snapshot {
                counters.messagesDropped &+= 1
                continue
            }
            if r.isFailed {
                // A newer term means the group went on without it: its resignation is done.
                if pm.message.term > r.resignTerm { r.resignTerm = .zero }
                counters.messagesDropped &+= 1
                continue
            }
            // For an election timeout after start, vote requests are dropped (transfers
            // excepted): a restarted member knows no leader, and granting at once could
            // elect a new leader while the old one still holds a read lease it confirmed
            // with this member before the restart.
            if currentTick < r.refuseVotesUntilTick,
                pm.message.kind == .preVote || (pm.message.kind == .vote && !pm.message.isTransferVote)
            {
                counters.messagesDropped &+= 1
                continue
            }
            // A dormant replica stays dormant for a repeat of its own leader's quiescing
            // heartbeat (same term, same sender); anything else rebuilds it.
            if let d = r.suspended, pm.message.kind == .heartbeat, pm.message.quiesce, pm.message.term == d.term,
                pm.message.from == d.lead
            {
                continue
            }
            // Entries naming an attachment this replica lacks stay out of its log until the
            // attachment is durable here: the acknowledgement of an entry promises it.
            if pm.message.kind == .append, !pm.message.entries.isEmpty, let bulk = context.bulk.current,
                !bulk.admit(pm, replica: r.key, sender: r.nodeSlot(of: pm.message.from).map { context.nodes[$0] })
            {
                counters.appendsHeldForAttachments &+= 1
                continue
            }
            guard let node = resident(r) else { continue }
            node.step(pm.message)
            syncResidency(r)
            markDirty(r)
        }
    }

    /// Steps a snapshot message whose data the snapshot service received and staged.
    package func deliverSnapshot(_ pm: PeerMessage) {
        guard let r = replica(ReplicaKey(partition: pm.partition, member: pm.message.to)), !r.isFailed,
            let node = resident(r)
        else {
            counters.messagesDropped &+= 1
            context.snapshots.current?.discard(pm)
            return
        }
        if r.pendingReady != nil {
            // Not stepped under a Ready in flight (its committed entries' configuration
            // changes would land on the restored configuration): after it completes. A newer
            // one replaces an older one waiting.
            if let older = r.stashedSnapshot { context.snapshots.current?.discard(older) }
            r.stashedSnapshot = pm
            return
        }
        counters.messagesReceived &+= 1
        node.step(pm.message)
        // A snapshot the core did not take (stale, or its log already had it): its staged
        // data goes.
        let data = pm.message.snapshot?.data
        if node.pendingSnapshot?.data != data && r.installing?.data != data {
            context.snapshots.current?.discard(pm)
        }
        syncResidency(r)
        markDirty(r)
    }

    /// The WAL unit of turn `token` for storage `slot` is durable (or failed). Its replicas
    /// complete now, whatever the turn's units on other storages do: a storage whose WAL
    /// refuses writes for a while (a full disk) holds back only its own replicas.
    package func durable(token: UInt64, slot: Int, result: Result<Void, WALError>) {
        guard var batch = inflight[token] else { preconditionFailure("unknown WAL token \(token)") }
        batch.remaining -= 1
        let done = batch.replicas.filter { $0.storageSlot == slot }
        batch.replicas.removeAll { $0.storageSlot == slot }
        if batch.remaining > 0 {
            inflight[token] = batch
        } else {
            precondition(batch.replicas.isEmpty, "turn \(token): replicas left after its last storage finished")
            inflight.removeValue(forKey: token)
        }
        if case .failure(let error) = result {
            // A fatal WAL error stops the process (the default `onFatal`); with a handler
            // that does not, the replicas of this storage in this unit fail.
            for r in done {
                r.pendingReady = nil
                fail(r, "WAL append failed: \(error)")
            }
            return
        }
        for r in done where !r.isFailed {
            guard let rd = r.pendingReady, let node = r.node else { continue }
            r.pendingReady = nil
            if let snapshot = rd.snapshot { installDurable(r, snapshot) }
            if let last = rd.entries.last { r.stableLog.durable(through: last.index, term: last.term) }
            complete(r, node, rd)
            markDirty(r)
            if let stashed = r.stashedSnapshot {
                r.stashedSnapshot = nil
                deliverSnapshot(stashed)
            }
        }
    }

    /// The apply worker applied the replica `key` through `index` (`confState`: the
    /// configuration after it, when a change was among the entries).
    package func applied(
        _ key: ReplicaKey, through index: LogIndex, confState: ConfState?, route: RouteEntry? = nil, entries: Int,
        failure: String?, kind: ApplyJob.Kind = .entries
    ) {
        guard let r = replica(key) else {
            preconditionFailure("apply report for \(key), which this shard does not host")
        }
        r.applyJobsInFlight -= 1
        if r.retirePending != nil {
            if r.applyJobsInFlight == 0 { handOverRetired(r) }
            return
        }
        // A replica held back by its apply backlog may take Readies again.
        if r.applyJobsInFlight == options.maxApplyJobsPerReplica - 1 { markDirty(r) }
        // A replica that failed meanwhile takes no more reports (a queued install's
        // included: its Ready was dropped).
        if r.isFailed { return }
        if let failure {
            if case .install = kind { r.pendingReady = nil }
            fail(r, "state machine: \(failure)")
            return
        }
        switch kind {
        case .entries: break
        case .install:
            installed(r)
            return
        case .finishInstall: return
        }
        r.applied = max(r.applied, index)
        counters.entriesApplied &+= UInt64(entries)
        var update = appliedUpdates[r.storageSlot][r.group] ?? AppliedUpdate(index: index, confState: nil)
        update.index = max(update.index, index)
        if let confState {
            update.confState = confState
            // The entry as of this job's change, not a later one handed out meanwhile (the
            // entry is recorded with the applied index it belongs to).
            if let route { update.route = route }
        }
        appliedUpdates[r.storageSlot][r.group] = update
        if let at = r.removedAt, r.applied >= at { retire(r, "the change at index \(at) removed it") }
    }

    // MARK: - Turn

    /// Takes one Ready from every replica with work and returns what to do with them.
    package func runTurn() -> TurnOutput {
        counters.turns &+= 1
        var i = 0
        while i < dirty.count {
            let r = dirty[i]
            i += 1
            r.isDirty = false
            process(r)
        }
        dirty.removeAll(keepingCapacity: true)
        return takeOutput()
    }

    private func process(_ r: Replica) {
        guard r.pendingReady == nil, let node = r.node else { return }
        // Backpressure: a replica whose state machine is behind takes no more Readies (its
        // acknowledgements stop, so its leader's in-flight window fills and waits).
        guard r.applyJobsInFlight < options.maxApplyJobsPerReplica else { return }
        // Readies that need no write are finished at once; at most a few per turn.
        for _ in 0..<4 {
            guard node.hasReady else { return }
            let rd = node.ready()
            if let soft = rd.softState { leaderChanged(r, node, soft) }
            route(rd.messages, of: r)
            if let snapshot = rd.snapshot {
                // The state machine installs it first (on its apply worker, after the jobs
                // before it); then the log reset, entries and hard state go to the WAL as one
                // write; then the Ready completes (its acknowledgement is sent).
                r.pendingReady = rd
                r.installing = snapshot
                var job = ApplyJob(target: r.applyTarget, entries: [], through: snapshot.metadata.index)
                job.kind = .install(snapshot)
                r.applyJobsInFlight += 1
                output.applyJobs.append(job)
                counters.snapshotsInstalled &+= 1
                return
            }
            if !rd.entries.isEmpty || rd.hardState != nil {
                // Entries and every hard state change are durable before anything that depends
                // on them is sent or applied (the commit too: nothing is applied beyond a
                // durable commit, so a restart never finds applied > commit).
                guard let write = walWrite(of: r, rd) else { return }
                enqueue(write, of: r, entries: rd.entries.count)
                r.pendingReady = rd
                return
            }
            complete(r, node, rd)
        }
        markDirty(r)
    }

    /// Adds `write` to this turn's WAL unit for the replica's storage.
    private func enqueue(_ write: GroupWrite, of r: Replica, entries: Int) {
        if output.token == 0 || inflight[output.token] == nil {
            output.token = nextToken
            nextToken += 1
            inflight[output.token] = (remaining: 0, replicas: [])
        }
        if output.writes[r.storageSlot].isEmpty { inflight[output.token]!.remaining += 1 }
        output.writes[r.storageSlot].append(write)
        inflight[output.token]!.replicas.append(r)
        counters.walWrites &+= 1
        counters.entriesWritten &+= UInt64(entries)
    }

    /// The state machine installed the snapshot of the pending Ready: its log reset goes
    /// to the WAL with the Ready's entries and hard state.
    private func installed(_ r: Replica) {
        guard let rd = r.pendingReady, let snapshot = rd.snapshot, r.node != nil else {
            preconditionFailure("\(r.key): an install finished without its Ready")
        }
        guard var write = walWrite(of: r, rd) else {
            r.pendingReady = nil
            return
        }
        write.reset = LogReset(index: snapshot.metadata.index, term: snapshot.metadata.term)
        enqueue(write, of: r, entries: rd.entries.count)
        // The install recorded its index and configuration in the metadata store; an older
        // update of this group must not follow it there.
        appliedUpdates[r.storageSlot][r.group] = AppliedUpdate(
            index: snapshot.metadata.index, confState: snapshot.metadata.confState)
    }

    /// The log reset of an installed snapshot is durable: the replica's log, applied index
    /// and configuration are the snapshot's; the install's recovery record may go.
    private func installDurable(_ r: Replica, _ snapshot: Snapshot) {
        let meta = snapshot.metadata
        r.installing = nil
        r.stableLog.reset(to: meta)
        r.applied = max(r.applied, meta.index)
        r.handedOut = max(r.handedOut, meta.index)
        r.baseConf = (meta.index, meta.confState)
        r.confHistory.removeAll()
        // Proposals this replica made (as a leader before) at or below the snapshot may be
        // inside it, committed, or not: their outcome is unknown, not "not applied".
        var kept = 0
        for p in r.proposals {
            if p.index > meta.index {
                r.proposals[kept] = p
                kept += 1
            } else {
                p.promise(.failure(.timedOut))
            }
        }
        r.proposals.removeLast(r.proposals.count - kept)
        trackRequests(r)
        updateMembers(r, meta.confState)
        // The snapshot carries the configuration, not the storages: an entry that does not
        // place every member is fetched from a peer at the next audit.
        if r.route.applying(meta.confState, added: [:], at: r.route.version) != r.route { r.routeStale = true }
        appliedUpdates[r.storageSlot][r.group] = AppliedUpdate(index: meta.index, confState: meta.confState)
        var job = ApplyJob(target: r.applyTarget, entries: [], through: meta.index)
        job.kind = .finishInstall(meta)
        r.applyJobsInFlight += 1
        output.applyJobs.append(job)
    }

    /// A Ready's entries and hard state as a WAL write; it joins this turn's unit for the
    /// replica's storage (the WAL cuts the unit into batches itself). Nil, and the replica
    /// fails, when an entry is larger than this storage's WAL takes: a leader configured
    /// with larger limits sent it (a configuration error, not this node's bug, so the node
    /// goes on serving its other replicas).
    private func walWrite(of r: Replica, _ rd: Ready) -> GroupWrite? {
        let limit = context.logs[r.storageSlot].maxEntryPayloadBytes
        var write = GroupWrite(group: r.group, entries: [], hardState: rd.hardState)
        write.entries.reserveCapacity(rd.entries.count)
        for entry in rd.entries {
            let wal = EntryCodec.walEntry(entry)
            if wal.payload.count > limit {
                fail(
                    r,
                    "entry \(entry.index) of \(wal.payload.count) bytes exceeds what the WAL of \(r.storageName) takes (\(limit) bytes): give every node the same maxBatchBytes and maxProposalBytes"
                )
                return nil
            }
            write.entries.append(wal)
        }
        return write
    }

    /// Finishes a Ready whose writes are durable: sends what waited for them, hands
    /// committed entries to apply, answers reads, advances the member.
    func complete(_ r: Replica, _ node: RawNode, _ rd: Ready) {
        route(rd.messagesAfterPersist, of: r)
        var job: ApplyJob?
        if !rd.committedEntries.isEmpty {
            counters.entriesCommitted &+= UInt64(rd.committedEntries.count)
            job = handOut(r, node, rd.committedEntries)
        }
        for state in rd.readStates { readIndexKnown(r, node, state) }
        node.advance(rd)
        releaseReads(r, into: &job)
        if let job {
            r.applyJobsInFlight += 1
            output.applyJobs.append(job)
        }
        syncResidency(r)
    }

    /// Builds the apply job of committed entries: applies configuration changes to the
    /// member now (the core needs them before its next Ready) and attaches the proposals
    /// these entries decide.
    private func handOut(_ r: Replica, _ node: RawNode, _ entries: [Entry]) -> ApplyJob {
        var job = ApplyJob(target: r.applyTarget, entries: entries, through: entries[entries.count - 1].index)
        for entry in entries {
            if case .confChange(let change) = entry.payload {
                let state = node.applyConfChange(change)
                r.stableLog.confState = state
                r.confChanged(at: entry.index, to: state)
                job.confState = state
                routeChanged(r, by: change, at: entry, to: state)
                job.route = r.route
                updateMembers(r, state)
            }
        }
        let first = entries[0].index
        let last = entries[entries.count - 1].index
        r.handedOut = last
        var kept = 0
        for p in r.proposals {
            if p.index > last {
                r.proposals[kept] = p
                kept += 1
            } else if p.index >= first {
                let entry = entries[Int(p.index.rawValue - first.rawValue)]
                job.proposals.append((p.promise, entry.term == p.term ? .success(p.index) : .failure(.lostLeadership)))
            } else {
                p.promise(.failure(.lostLeadership))
            }
        }
        r.proposals.removeLast(r.proposals.count - kept)
        trackRequests(r)
        return job
    }

    /// Derives the routing entry from a committed change, versioned by the entry's (term,
    /// index): a replica replaying entries older than its entry (a joiner given the
    /// current one) keeps it. Added members' storages come from the change's context.
    private func routeChanged(_ r: Replica, by change: ConfChange, at entry: Entry, to state: ConfState) {
        let version = RouteVersion(term: entry.term, index: entry.index)
        guard r.route.version < version else { return }
        // Decided by the configuration alone (whether or not an entry can be derived): a
        // change past this replica's entry that leaves it out removed it.
        if !state.members.contains(r.key.member) {
            // This replica left the group: it stops here; the host deletes its data.
            r.removedAt = entry.index
        }
        let added = PlacementContext.decode(change.context) ?? [:]
        // A member this replica cannot place (its entry missed a change that a snapshot
        // covered): no entry is derived at this version; a peer's complete one is fetched.
        guard let next = r.route.applying(state, added: added, at: version) else {
            r.routeStale = true
            return
        }
        r.route = next
        r.routeStale = false
    }

    /// Keeps the member-to-node table in step with the configuration and the routing
    /// entry: members that left are forgotten; added ones get the node of their storage.
    func updateMembers(_ r: Replica, _ state: ConfState) {
        r.members = context.members(of: state, route: r.route)
    }

    private func leaderChanged(_ r: Replica, _ node: RawNode, _ soft: SoftState) {
        if soft.role == .leader {
            counters.leadershipsGained &+= 1
            r.lastActivityTick = currentTick
            if r.leaderSinceNanoseconds == nil || r.leaderTerm != node.term {
                r.leaderTerm = node.term
                r.leaderSinceNanoseconds = context.clock.nanoseconds
            }
        } else {
            r.leaderSinceNanoseconds = nil
            // A read accepted while leading is answered only by that leadership.
            failUnansweredReads(r, leader: soft.leader)
        }
    }

    /// Sends messages: one frame per destination node per turn.
    func route(_ messages: [Message], of r: Replica) {
        guard !messages.isEmpty else { return }
        for m in messages {
            guard let slot = r.nodeSlot(of: m.to) else {
                counters.messagesDropped &+= 1
                continue
            }
            if m.kind == .snapshot {
                // Streamed by the snapshot service on the bulk path, never in a frame.
                r.snapshotsSending += 1
                output.snapshotsToSend.append((PeerMessage(partition: r.key.partition, message: m), slot))
                continue
            }
            output.frames[slot].append(PeerMessage(partition: r.key.partition, message: m))
        }
        counters.messagesSent &+= UInt64(messages.count)
    }
}

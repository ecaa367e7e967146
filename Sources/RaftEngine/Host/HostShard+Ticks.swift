import RaftConsensus

extension HostShard {
    /// Campaigns this shard may start per tick: its share of the node's budget.
    var campaignBudget: Int { max(1, options.maxCampaignsPerTick / max(1, context.options.workers)) }
    var wakeBudget: Int { max(1, options.maxWakesPerTick / max(1, context.options.workers)) }

    /// One tick: only awake replicas are ticked; idle leaders quiesce; due campaigns start
    /// (paced); quiesced replicas past their time are shrunk to dormant records; requests
    /// past their deadline are answered.
    package func tick() {
        currentTick += 1
        campaignsThisTick = 0
        var i = 0
        while i < awake.count {
            let r = awake[i]
            i += 1
            guard let node = r.node else { continue }
            // An idle leader quiesces instead of ticking (a tick would queue heartbeats,
            // which make it not quiescable until they are sent).
            if node.role == .leader && currentTick >= r.lastActivityTick + UInt64(options.quiesceAfterIdleTicks)
                && r.pendingReady == nil && !r.hasRequests && quiesceLeader(r, node)
            {
                // The slot of `r` was refilled by swap-remove: look at it again.
                i -= 1
                markDirty(r)
                continue
            }
            node.tick()
            counters.ticksGiven &+= 1
            markDirty(r)
            if node.quiesceIfIdleNonVoter() {
                // Out of the ticked list: the slot of `r` was refilled by swap-remove.
                syncResidency(r)
                i -= 1
            }
        }
        runCampaigns()
        runResignations()
        runWakes()
        runCatchUps()
        suspendIdle()
        expireRequests()
        if currentTick % UInt64(options.compactionIntervalTicks) == 0 { compactLogs() }
    }

    /// Quiesces an idle leader, not waiting for members on dead nodes (remembered, so the
    /// group wakes when their node returns).
    private func quiesceLeader(_ r: Replica, _ node: RawNode) -> Bool {
        let down = downMembers(of: r)
        guard node.quiesce(ignoring: down) else { return false }
        counters.quiesces &+= 1
        for m in down {
            if let slot = r.nodeSlot(of: m), !r.laggingNodes.contains(slot) {
                r.laggingNodes.append(slot)
                laggingByNode[slot].append(r)
            }
        }
        setNotAwake(r, as: .quiesced)
        noteQuiesced(r)
        return true
    }

    func noteQuiesced(_ r: Replica) {
        r.quiescedAtTick = currentTick
        guard options.dormantAfterQuiescedTicks > 0 else { return }
        quiescedQueue.append((r, currentTick))
    }

    // MARK: - Node liveness

    /// A peer node was declared dead (or restarted). Only the groups it led wake: each
    /// forgets its leader and waits for a paced, jittered campaign slot. The replica that a
    /// hash of the partition prefers among the live voters goes first; the others only a
    /// full election timeout later, if no leader emerged, so two survivors rarely split the
    /// vote.
    ///
    /// The preferred replica first waits out the detection skew: each survivor declares the
    /// node dead one liveness timeout after the last frame *it* heard, so they do so up to a
    /// liveness interval (plus a tick on each side) apart. A survivor that still counts the
    /// leader as live drops a pre-vote (the leader's lease), and the campaign would then
    /// retry only after a whole randomized election timeout: campaigning early made the
    /// failover slower, not faster.
    package func nodeDown(_ slot: Int) {
        downNodes.insert(slot)
        let e = UInt64(options.electionTicks)
        let skew = UInt64(options.livenessIntervalTicks + 2)
        for key in replicas.keys.sorted() {
            for r in replicas[key]! where !r.isFailed && r.residency != .awaitingCampaign {
                let leader = r.knownLeader
                guard leader != .none, leader != r.key.member, r.nodeSlot(of: leader) == slot else { continue }
                guard let node = resident(r) else { continue }
                node.forgetLeader()
                setNotAwake(r, as: .awaitingCampaign)
                let preferred = preferredCampaigner(r)
                let jitter = UInt64(rng.next(below: max(1, Int(e / 4))))
                let delay: UInt64 = skew + jitter + (preferred == r.key.member ? 0 : e)
                r.campaignAtTick = currentTick + delay
                campaignQueue.append(r)
                markDirty(r)
            }
        }
    }

    /// A peer node is alive again: groups that quiesced without it wake (paced) so their
    /// leaders catch it up.
    package func nodeUp(_ slot: Int) {
        downNodes.remove(slot)
        let lagging = laggingByNode[slot]
        laggingByNode[slot] = []
        for r in lagging where r.laggingNodes.contains(slot) {
            r.laggingNodes.removeAll { $0 == slot }
            wakeQueue.append(r)
        }
    }

    /// The live voter a hash of the partition picks to campaign first.
    func preferredCampaigner(_ r: Replica) -> MemberID {
        guard let node = r.node else { return .none }
        let voters = node.confState.voters.filter { m in
            guard let slot = r.nodeSlot(of: m) else { return false }
            return !downNodes.contains(slot)
        }
        guard !voters.isEmpty else { return .none }
        return voters[Int(Self.stableHash(r.key.partition) % UInt64(voters.count))]
    }

    /// FNV-1a of the partition key (authority name bytes, then the ID's 8 bytes): stable
    /// across processes and runs, and no allocation (it runs for every peer message).
    static func stableHash(_ key: PartitionKey) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.authority.rawValue.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        var id = key.partitionID.rawValue
        for _ in 0..<8 {
            h ^= id & 0xFF
            h = h &* 0x100_0000_01b3
            id >>= 8
        }
        return h
    }

    private func runCampaigns() {
        guard !campaignQueue.isEmpty else { return }
        var budget = campaignBudget
        var waiting: [Replica] = []
        // Earliest slot first; ties in queue order (deterministic).
        let due = campaignQueue.enumerated().filter { $0.element.campaignAtTick <= currentTick }
            .sorted { ($0.element.campaignAtTick, $0.offset) < ($1.element.campaignAtTick, $1.offset) }.map(\.element)
        var started: Set<ObjectIdentifier> = []
        for r in due {
            guard case .awaitingCampaign(let node) = r.state else {
                started.insert(ObjectIdentifier(r))
                continue
            }
            if node.leader != .none || node.role != .follower {
                // Someone else won (or this one is already running): just resume; the new
                // leader may already have quiesced the group.
                started.insert(ObjectIdentifier(r))
                r.state = .quiesced(node)
                if node.isQuiesced {
                    noteQuiesced(r)
                } else {
                    setAwake(r)
                }
                continue
            }
            guard budget > 0 else { break }
            budget -= 1
            started.insert(ObjectIdentifier(r))
            startCampaign(r, node)
        }
        for r in campaignQueue where !started.contains(ObjectIdentifier(r)) { waiting.append(r) }
        campaignQueue = waiting
    }

    /// Wakes the replica and starts its campaign (counted in this tick).
    func startCampaign(_ r: Replica, _ node: RawNode) {
        r.state = .quiesced(node)
        setAwake(r)
        // A local replica is never ticked: its quiet period, which ends in a dormant
        // record, starts now and restarts with each request (see `suspendIdle`).
        if r.mode == .local { noteQuiesced(r) }
        node.campaign()
        markDirty(r)
        counters.campaigns &+= 1
        campaignsThisTick += 1
        counters.maxCampaignsInATick = max(counters.maxCampaignsInATick, campaignsThisTick)
    }

    /// Failed leaders ask again every election timeout until a newer term is seen.
    private func runResignations() {
        guard !resigning.isEmpty else { return }
        resigning.removeAll { $0.resignTerm == .zero }
        for r in resigning where currentTick >= r.resignedAtTick + UInt64(options.electionTicks) {
            r.resignedAtTick = currentTick
            resign(r)
        }
    }

    private func runWakes() {
        guard !wakeQueue.isEmpty else { return }
        let n = min(wakeBudget, wakeQueue.count)
        for r in wakeQueue.prefix(n) where !r.isFailed {
            guard let node = resident(r) else { continue }
            // Only a replica that still leads has someone to catch up; an ex-leader that now
            // follows would just tick and pre-vote against its leader.
            if node.isQuiesced && node.role == .leader {
                node.wake()
                r.lastActivityTick = currentTick
                counters.wakesAfterReturn &+= 1
            }
            syncResidency(r)
            markDirty(r)
        }
        wakeQueue.removeFirst(n)
    }

    /// Rebuilds replicas loaded with committed entries left to apply, so their next Ready
    /// hands them out; they stay quiesced (no tick, no election timer).
    private func runCatchUps() {
        guard !catchUpQueue.isEmpty else { return }
        let n = min(wakeBudget, catchUpQueue.count)
        for r in catchUpQueue.prefix(n) where !r.isFailed {
            guard resident(r) != nil else { continue }
            markDirty(r)
        }
        catchUpQueue.removeFirst(n)
    }

    /// Shrinks replicas quiesced long enough to dormant records (bounded per tick).
    private func suspendIdle() {
        let after = UInt64(options.dormantAfterQuiescedTicks)
        guard after > 0 else { return }
        var budget = options.maxSuspensionsPerTick
        while quiescedHead < quiescedQueue.count, budget > 0 {
            let (r, at) = quiescedQueue[quiescedHead]
            guard at + after <= currentTick else { break }
            quiescedHead += 1
            budget -= 1
            // Still the same quiet period, nothing in flight?
            guard r.residency == .quiesced, r.quiescedAtTick == at else { continue }
            if r.mode == .local, let node = r.node {
                // Never ticked, so never quiesced by a tick: its quiet period runs from its
                // last request, and it quiesces here (alone, it has no one to tell).
                if r.lastActivityTick > at {
                    noteQuiesced(r)
                    continue
                }
                if !node.isQuiesced && !node.quiesce() {
                    noteQuiesced(r)
                    continue
                }
            }
            // Busy at this moment: try again after another quiet period.
            if !suspend(r) { noteQuiesced(r) }
        }
        if quiescedHead > 4096 && quiescedHead * 2 > quiescedQueue.count {
            quiescedQueue.removeFirst(quiescedHead)
            quiescedHead = 0
        }
    }

    /// Shrinks a quiesced replica with nothing in flight to its dormant record; false when
    /// it is busy or its member cannot be suspended now.
    private func suspend(_ r: Replica) -> Bool {
        guard r.pendingReady == nil, !r.hasRequests, r.applyJobsInFlight == 0, !r.isDirty,
            let state = r.node?.suspend()
        else { return false }
        r.state = .dormant(state)
        counters.dormant += 1
        counters.suspensions &+= 1
        return true
    }

    /// Shrinks every quiesced replica now (benchmarks and tests; bypasses the timer).
    func suspendAllQuiesced() -> Int {
        var n = 0
        for key in replicas.keys.sorted() {
            for r in replicas[key]! where r.residency == .quiesced && suspend(r) { n += 1 }
        }
        return n
    }
}

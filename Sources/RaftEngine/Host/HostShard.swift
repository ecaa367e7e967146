import RaftConsensus

/// The groups of one worker and everything done to them, single-threaded and deterministic
/// (given its inputs, in order). `NodeHost` runs one per worker thread; the host simulation
/// drives shards directly with a seed.
///
/// A turn: the driver feeds inputs (peer messages, requests, ticks, durable WAL batches,
/// applied indices), then `runTurn()` takes one Ready from every replica with work and
/// returns the frames, WAL writes and apply jobs to carry out. A replica whose Ready waits
/// for the WAL takes no further Ready until that batch is durable; every other replica
/// continues, so stepping the next turn overlaps the previous batch's fdatasync.
package final class HostShard {
    let index: Int
    let context: ShardContext
    var options: NodeHost.Options { context.options }

    /// Replicas by partition (a node may host several replicas of one partition on
    /// different storages).
    var replicas: [PartitionKey: [Replica]] = [:]
    /// Replicas that are ticked.
    var awake: [Replica] = []
    /// Replicas stepped since the last turn.
    var dirty: [Replica] = []
    /// Ticks this shard has taken (its own count: ticks queued while it was busy merge).
    package var currentTick: UInt64 = 0
    var rng: SplitMix64
    var counters = HostCounters()

    /// Node slots currently declared dead.
    package var downNodes: Set<Int> = []
    /// Replicas whose leader's node died, waiting for their campaign slot.
    var campaignQueue: [Replica] = []
    /// Replicas to wake because a node they ignored came back.
    var wakeQueue: [Replica] = []
    /// Replicas loaded at start with committed entries left to apply.
    var catchUpQueue: [Replica] = []
    /// Replicas that quiesced, oldest first, with the tick they quiesced at.
    var quiescedQueue: [(replica: Replica, at: UInt64)] = []
    var quiescedHead = 0
    /// Per node slot: replicas that quiesced while that node was dead.
    var laggingByNode: [[Replica]]
    /// Replicas with requests in flight (for deadlines).
    var withRequests: [ObjectIdentifier: Replica] = [:]
    var campaignsThisTick: UInt64 = 0

    /// WAL batches not yet durable: token -> (storages left, replicas waiting).
    var inflight: [UInt64: (remaining: Int, replicas: [Replica])] = [:]
    var nextToken: UInt64 = 1
    /// Counter of this shard's ReadIndex requests (see `ReadContext`).
    var nextReadID: UInt64 = 1
    var output: TurnOutput
    /// Applied indices to record in the metadata store, per storage slot.
    var appliedUpdates: [[GroupID: AppliedUpdate]]
    /// Failed replicas that led when they failed: they ask a caught-up member to take over,
    /// again every election timeout, until a newer term shows that someone did.
    var resigning: [Replica] = []

    package init(index: Int, context: ShardContext, seed: UInt64) {
        self.index = index
        self.context = context
        self.rng = SplitMix64(seed: seed ^ (UInt64(index) &* 0xD6E8_FEB8_6659_FD93))
        output = TurnOutput(nodes: context.nodes.count, storages: context.logs.count)
        laggingByNode = Array(repeating: [], count: context.nodes.count)
        appliedUpdates = Array(repeating: [:], count: context.logs.count)
    }

    // MARK: - Replicas

    /// Adds a replica (created or loaded). Fresh replicas that should campaign are queued
    /// for a paced campaign, except one that is its group's only voter, which campaigns at
    /// once; every other replica starts dormant or quiesced: not ticked until a message or
    /// request wakes it.
    package func add(_ replica: Replica, campaign: Bool) {
        replicas[replica.key.partition, default: []].append(replica)
        replica.stableLog.snapshotNeeded = { [unowned self, unowned replica] in snapshotNeeded(replica) }
        counters.replicas += 1
        if let suspended = replica.suspended {
            counters.dormant += 1
            counters.loadedDormant += 1
            // Loaded from disk at start: see `deliver` on vote requests.
            replica.refuseVotesUntilTick = currentTick + UInt64(options.electionTicks)
            // Committed entries its state machine does not hold yet (a crash between the
            // durable commit and the apply) are applied soon, paced, without waiting for
            // traffic: a replica left dormant would serve stale reads indefinitely.
            if replica.stateMachine.appliedIndex < suspended.commit { catchUpQueue.append(replica) }
        }
        if campaign, let node = replica.node {
            if replica.stableLog.confState.hasOnlyVoter(replica.key.member) {
                // Its only voter: no votes to ask for, so no storm to pace. A new
                // single-member partition leads at once (one WAL write), without waiting
                // for a tick slot.
                startCampaign(replica, node)
                return
            }
            replica.state = .awaitingCampaign(node)
            replica.campaignAtTick = currentTick
            campaignQueue.append(replica)
        }
    }

    /// The local replica of `partition` that should take a request: the leader if one is
    /// local, else the first.
    package func replica(for partition: PartitionKey) -> Replica? {
        guard let local = replicas[partition] else { return nil }
        if local.count == 1 { return local[0] }
        return local.first { $0.node?.role == .leader } ?? local[0]
    }

    func replica(_ key: ReplicaKey) -> Replica? {
        guard let local = replicas[key.partition] else { return nil }
        for r in local where r.key.member == key.member { return r }
        return nil
    }

    func makeConfig(for r: Replica) -> RaftConfig {
        context.raftConfig(member: r.key.member, applied: r.handedOut, seed: rng.next())
    }

    /// Makes the consensus member resident (rebuilding it from the log if dormant).
    @discardableResult
    func resident(_ r: Replica) -> RawNode? {
        if let node = r.node { return node }
        guard let suspended = r.suspended else { return nil }
        let node = RawNode(config: makeConfig(for: r), log: r.stableLog, resuming: suspended)
        r.state = .quiesced(node)
        counters.dormant -= 1
        counters.rehydrations += 1
        // Rebuilt quiesced: it shrinks again after a quiet period unless something wakes it.
        noteQuiesced(r)
        return node
    }

    // MARK: - Ticked set

    /// Ticks the replica from now on (a resident, not failed replica). A local one is never
    /// ticked: alone in its group, it has no heartbeats to send and no leader to lose.
    func setAwake(_ r: Replica) {
        guard r.mode == .raft, r.awakeSlot == nil, let node = r.node else { return }
        r.state = .awake(node, slot: awake.count)
        awake.append(r)
    }

    /// The states a resident replica rests in, not ticked.
    enum Resting {
        case quiesced
        case awaitingCampaign
    }

    /// Stops ticking the replica.
    func setNotAwake(_ r: Replica, as resting: Resting) {
        removeFromAwake(r)
        guard let node = r.node else { return }
        switch resting {
        case .quiesced: r.state = .quiesced(node)
        case .awaitingCampaign: r.state = .awaitingCampaign(node)
        }
    }

    /// Takes the replica off the ticked list (swap-remove: the last one takes its slot).
    private func removeFromAwake(_ r: Replica) {
        guard let slot = r.awakeSlot else { return }
        let last = awake.removeLast()
        if last !== r {
            awake[slot] = last
            if case .awake(let node, _) = last.state { last.state = .awake(node, slot: slot) }
        }
        if case .awake(let node, _) = r.state { r.state = .quiesced(node) }
    }

    /// After the member changed: tick it if it is not quiesced, stop ticking it if it is.
    func syncResidency(_ r: Replica) {
        switch r.state {
        case .awake(let node, _):
            if node.isQuiesced {
                setNotAwake(r, as: .quiesced)
                noteQuiesced(r)
            }
        case .quiesced(let node):
            if !node.isQuiesced { setAwake(r) }
        case .awaitingCampaign, .dormant, .failed:
            break
        }
    }

    func markDirty(_ r: Replica) {
        guard !r.isDirty else { return }
        r.isDirty = true
        dirty.append(r)
    }

    func trackRequests(_ r: Replica) {
        if r.hasRequests {
            withRequests[ObjectIdentifier(r)] = r
        } else {
            withRequests.removeValue(forKey: ObjectIdentifier(r))
        }
    }

    /// Nodes slots (other than ours) that are declared dead and host a member of `r`.
    func downMembers(of r: Replica) -> Set<MemberID> {
        guard !downNodes.isEmpty else { return [] }
        var down: Set<MemberID> = []
        for m in r.members {
            if let slot = m.nodeSlot, downNodes.contains(slot) { down.insert(m.member) }
        }
        return down
    }

    /// Stops a replica for good after a storage or state machine failure. A failed leader
    /// hands its group over (see `resign`): its followers may be quiesced, and would never
    /// notice a leader that just went silent on a live node.
    func fail(_ r: Replica, _ reason: String) {
        guard !r.isFailed else { return }
        let node = r.node
        // A dormant replica fails too (a retirement learned from a peer's routing entry).
        if r.suspended != nil { counters.dormant -= 1 }
        removeFromAwake(r)
        r.state = .failed(reason: reason, member: node)
        r.pendingReady = nil
        if let stashed = r.stashedSnapshot {
            context.snapshots.current?.discard(stashed)
            r.stashedSnapshot = nil
        }
        if let node, node.role == .leader {
            r.resignTerm = node.term
            r.resignedAtTick = currentTick
            resigning.append(r)
            resign(r)
        }
        let error = HostError.replicaFailed(reason)
        for p in r.proposals { p.promise(.failure(error)) }
        for read in r.reads { read.promise(.failure(error)) }
        r.proposals = []
        r.reads = []
        trackRequests(r)
    }

    /// A failed leader asks the most caught-up voter on a live node to campaign at once
    /// (TimeoutNow, as a leadership transfer ends). Its campaign, at a higher term, wakes
    /// the whole group; if its log is behind, the group elects another member after an
    /// election timeout. Nothing is persisted: the failed member takes no further part.
    func resign(_ r: Replica) {
        guard case .failed(_, let member?) = r.state else { return }
        // Live voters, most caught-up first; each attempt asks the next one (the first may
        // itself be unable to campaign, e.g. failed too).
        var candidates: [(member: MemberID, match: LogIndex)] = []
        for m in member.confState.voters where m != r.key.member {
            guard let slot = r.nodeSlot(of: m), !downNodes.contains(slot) else { continue }
            candidates.append((m, member.progress(of: m)?.match ?? .zero))
        }
        guard !candidates.isEmpty else { return }
        candidates.sort { ($0.match, $1.member) > ($1.match, $0.member) }
        let target = candidates[r.resignAttempts % candidates.count].member
        r.resignAttempts += 1
        route([Message(kind: .timeoutNow, from: r.key.member, to: target, term: r.resignTerm)], of: r)
    }

    /// Takes the output accumulated since the last call.
    func takeOutput() -> TurnOutput {
        var out = TurnOutput(nodes: context.nodes.count, storages: context.logs.count)
        swap(&out, &output)
        return out
    }

    /// Takes the applied indices to record, per storage slot.
    func takeAppliedUpdates() -> [[GroupID: AppliedUpdate]] {
        defer { appliedUpdates = Array(repeating: [:], count: context.logs.count) }
        return appliedUpdates
    }

    /// Replicas ticked right now (tests and the simulation).
    package var awakeReplicas: [Replica] { awake }

    /// Checks every replica's invariants and the ticked list (the host simulation runs it
    /// after every turn).
    package func checkInvariants() {
        for (i, r) in awake.enumerated() {
            precondition(r.awakeSlot == i, "\(r.key) is in the ticked list at \(i) but its state is \(r.residency)")
        }
        var dormant = 0
        for list in replicas.values {
            for r in list {
                r.checkInvariants()
                if r.suspended != nil { dormant += 1 }
            }
        }
        precondition(dormant == counters.dormant, "dormant count \(counters.dormant), found \(dormant)")
    }

    var snapshotCounters: HostCounters {
        var c = counters
        c.awake = awake.count
        for list in replicas.values {
            for r in list {
                let entries = r.stableLog.lastIndex.rawValue &+ 1 &- r.stableLog.firstIndex.rawValue
                c.logEntries &+= entries
                c.largestLogEntries = max(c.largestLogEntries, entries)
            }
        }
        return c
    }
}

import RaftConsensus

/// Deterministic cluster simulator. One seed drives every choice (faults, delays, workload,
/// election jitter), so `run(seed:config:)` with the same arguments replays the same run.
public final class Simulator {
    /// Delivery rounds per tick: message delays are measured in rounds, so a message can take
    /// a fraction of a heartbeat interval or several.
    static let roundsPerTick = 3

    let config: SimulationConfig
    let seed: UInt64
    var rng: SplitMix64
    var nodes: [SimNode] = []
    var net = SimNetwork()
    var now = 0  // rounds
    var tickCount = 0
    var trace: [String] = []
    var traceDropped = 0
    var failure: String?
    var invariants = InvariantChecker()
    var workload: Workload
    var faultsActive = true
    var stats = (committed: 0, leaderChanges: 0, snapshots: 0, confChanges: 0)
    /// How often each kind of fault or event happened (reported for coverage).
    var counters: [String: Int] = [:]

    func count(_ what: String) { counters[what, default: 0] += 1 }

    init(seed: UInt64, config: SimulationConfig) {
        self.seed = seed
        self.config = config
        self.rng = SplitMix64(seed: seed)
        self.workload = Workload(clients: config.clients, keys: config.keys)
        let ids = (1...config.members).map { MemberID(UInt64($0)) }
        let conf = ConfState(voters: ids)
        for id in ids {
            var rc = RaftConfig(id: id)
            rc.preVote = config.preVote
            rc.checkQuorum = config.checkQuorum
            rc.maxSizePerMsg = config.maxSizePerMsg
            rc.maxInflightMsgs = config.maxInflightMsgs
            rc.maxUncommittedEntriesSize = 1 << 16
            rc.seed = seed
            nodes.append(SimNode(id: id, config: rc, initialConf: conf, keys: config.keys))
        }
    }

    /// Runs one seed to completion and reports invariant or liveness violations.
    public static func run(seed: UInt64, config: SimulationConfig = SimulationConfig()) -> SimulationResult {
        let sim = Simulator(seed: seed, config: config)
        sim.execute()
        let outcome = sim.result()
        if outcome.passed || config.traceMessages { return outcome }
        // Replay the same seed with message tracing for the report; the run is deterministic,
        // so it must fail the same way.
        var verbose = config
        verbose.traceMessages = true
        let replay = Simulator(seed: seed, config: verbose)
        replay.execute()
        var detailed = replay.result()
        if detailed.failure != outcome.failure {
            detailed.failure =
                (outcome.failure ?? "")
                + "\n  (NONDETERMINISM: replay failed differently: \(detailed.failure ?? "passed"))"
        }
        return detailed
    }

    func node(_ id: MemberID) -> SimNode? {
        let i = Int(id.rawValue) - 1
        return i >= 0 && i < nodes.count ? nodes[i] : nil
    }

    func record(_ line: @autoclosure () -> String) {
        trace.append("r\(now) t\(tickCount) " + line())
        if trace.count > config.traceLimit * 2 {
            traceDropped += trace.count - config.traceLimit
            trace.removeFirst(trace.count - config.traceLimit)
        }
    }

    func fail(_ why: String) {
        if failure == nil {
            failure = why
            record("VIOLATION: \(why)")
        }
    }

    func result() -> SimulationResult {
        SimulationResult(
            seed: seed, failure: failure, trace: Array(trace.suffix(config.traceLimit)),
            committedEntries: stats.committed, completedOps: workload.history.count,
            unknownOps: workload.history.filter { $0.output == .unknown }.count,
            leaderChanges: stats.leaderChanges, snapshotsInstalled: stats.snapshots,
            confChangesApplied: stats.confChanges,
            events: counters.keys.sorted().map { ($0, counters[$0]!) })
    }

    // MARK: - Main loop

    func execute() {
        let totalTicks = config.faultTicks + config.livenessBoundTicks
        var healedAt: Int?
        var sentinel: (opID: UInt64, proposedAt: Int)?
        var livenessDone = false
        while tickCount < totalTicks && failure == nil {
            if tickCount == config.faultTicks {
                healEverything()
                healedAt = tickCount
            }
            if faultsActive { injectFaults() }
            for n in nodes { n.node?.tick() }
            workload.issue(sim: self)
            for _ in 0..<Simulator.roundsPerTick {
                deliverRound()
                processAllReady()
                // Log Matching and committed-entry checks after every delivery round (log tails;
                // whole logs every 10 ticks). Election and state-machine safety are checked
                // inline on every Ready.
                invariants.checkLogs(sim: self, window: tickCount % 10 == 0 ? nil : 16)
                if failure != nil { break }
            }
            workload.expire(sim: self)
            if let h = healedAt, !livenessDone {
                livenessDone = checkLiveness(sentinel: &sentinel, healedAt: h)
                if livenessDone { record("liveness: sentinel committed everywhere \(tickCount - h) ticks after heal") }
            }
            tickCount += 1
        }
        if failure == nil && !livenessDone {
            fail("liveness: no leader committed a proposal within \(config.livenessBoundTicks) ticks after healing")
        }
        if failure == nil { invariants.checkLogs(sim: self) }
        workload.finish(sim: self)
        if failure == nil && config.checkLinearizability {
            if case .notLinearizable(let key) = LinearizabilityChecker.check(workload.history) {
                let ops = workload.history.filter { $0.key == key }
                fail("history of key \(key) is not linearizable:\n" + ops.map { "      \($0)" }.joined(separator: "\n"))
            }
        }
    }

    /// After healing: some leader must commit a sentinel that every live member applies.
    private func checkLiveness(sentinel: inout (opID: UInt64, proposedAt: Int)?, healedAt: Int) -> Bool {
        if let s = sentinel {
            let members = Set(nodes[0...].compactMap { n -> MemberID? in n.isUp ? n.id : nil })
            // Everyone still in the configuration of the leader must have applied it.
            guard let leader = nodes.first(where: { $0.node?.role == .leader }) else { return false }
            let cs = leader.confState
            let required = Set(cs.voters + cs.votersOutgoing + cs.learners).intersection(members)
            let done = required.allSatisfy { invariants.sentinelApplied[s.opID]?.contains($0) ?? false }
            if !done && tickCount - s.proposedAt > 60 { sentinel = nil }  // lost with a leader change: retry
            return done
        }
        guard let leader = nodes.first(where: { $0.node?.role == .leader }),
            let rn = leader.node
        else { return false }
        let opID = UInt64(1_000_000 + tickCount)
        let cmd = RegisterCommand(kind: .sentinel, key: 0, opID: opID, a: 0, b: 0)
        if case .appended = rn.propose(cmd.encode()) {
            sentinel = (opID, tickCount)
            record("liveness: proposed sentinel \(opID) on \(leader.id)")
        }
        return false
    }

    private func healEverything() {
        faultsActive = false
        net.healAll()
        for n in nodes where !n.isUp {
            n.start()
            record("restart \(n.id) (heal)")
        }
        record("heal: all links up, no more faults")
    }

    // MARK: - Faults

    private func injectFaults() {
        let ids = nodes.map(\.id)
        if rng.chance(config.partitionPerMille, in: 1000) {
            let victim = ids[rng.next(below: ids.count)]
            if rng.chance(1, in: 3) {
                // One-way: victim can send but not receive (or the reverse).
                let inbound = rng.chance(1, in: 2)
                for o in ids where o != victim {
                    if inbound { net.cutLink(o, victim) } else { net.cutLink(victim, o) }
                }
                count("partition-one-way"); record("partition one-way \(inbound ? "into" : "out of") \(victim)")
            } else {
                // Symmetric: a random minority-or-majority split.
                var side: [MemberID] = [victim]
                for o in ids where o != victim && rng.chance(1, in: 3) { side.append(o) }
                for a in side { for b in ids where !side.contains(b) { net.cutLink(a, b); net.cutLink(b, a) } }
                count("partition"); record("partition \(side) | rest")
            }
        }
        if !net.cut.isEmpty && rng.chance(config.healPerMille, in: 1000) {
            net.healAll()
            record("heal partitions")
        }
        for n in nodes {
            if n.isUp && rng.chance(config.crashPerMille, in: 1000) {
                n.crash()
                workload.nodeCrashed(n.id, sim: self)
                count("crash"); record("crash \(n.id)")
            } else if !n.isUp && rng.chance(config.restartPerMille, in: 1000) {
                n.start()
                count("restart"); record("restart \(n.id)")
            }
            if n.isUp && rng.chance(config.snapshotPerMille, in: 1000) {
                n.snapshotAndCompact(keep: 3)
            }
        }
        guard let leader = nodes.first(where: { $0.node?.role == .leader }), let rn = leader.node else { return }
        if rng.chance(config.isolateLeaderPerMille, in: 1000) {
            // The nastiest partition for reads: the leader alone, still believing it leads.
            for o in ids where o != leader.id { net.cutLink(leader.id, o); net.cutLink(o, leader.id) }
            count("isolate-leader"); record("partition leader \(leader.id) | rest")
        }
        if rng.chance(config.confChangePerMille, in: 1000) { proposeRandomConfChange(leader) }
        if rng.chance(config.transferPerMille, in: 1000) {
            let voters = leader.confState.voters.filter { $0 != leader.id }
            if !voters.isEmpty {
                let target = voters[rng.next(below: voters.count)]
                count("transfer"); record("transfer \(leader.id) -> \(target): \(rn.transferLeadership(to: target))")
            }
        }
        if rng.chance(config.quiescePerMille, in: 1000) && rn.quiesce() {
            count("quiesce"); record("quiesce leader \(leader.id)")
        }
    }

    private func proposeRandomConfChange(_ leader: SimNode) {
        guard let rn = leader.node else { return }
        let cs = rn.confState
        let all = nodes.map(\.id)
        let minVoters = config.members >= 5 ? 3 : 2
        var cc: ConfChange?
        if !cs.votersOutgoing.isEmpty {
            cc = .leaveJoint
        } else {
            let learners = cs.learners
            let outsiders = all.filter { !cs.voters.contains($0) && !learners.contains($0) }
            switch rng.next(below: 5) {
            case 0 where cs.voters.count > minVoters:
                // Demote a voter (possibly the leader itself).
                cc = ConfChange([.addLearner(cs.voters[rng.next(below: cs.voters.count)])])
            case 1 where !learners.isEmpty:
                cc = ConfChange([.addVoter(learners[rng.next(below: learners.count)])])
            case 2 where !learners.isEmpty && cs.voters.count >= minVoters:
                cc = ConfChange([.remove(learners[rng.next(below: learners.count)])])
            case 3 where !outsiders.isEmpty:
                cc = ConfChange([.addLearner(outsiders[rng.next(below: outsiders.count)])])
            case 4 where !learners.isEmpty:
                // Joint swap: promote a learner and demote a voter at once.
                let up = learners[rng.next(below: learners.count)]
                let down = cs.voters[rng.next(below: cs.voters.count)]
                cc = ConfChange(
                    [.addVoter(up), .addLearner(down)],
                    transition: rng.chance(1, in: 2) ? .jointImplicit : .jointExplicit)
            default:
                cc = nil
            }
        }
        if let cc {
            count("conf-change-proposal");
            record("propose conf change on \(leader.id): \(cc) -> \(rn.proposeConfChange(cc))")
        }
    }

    // MARK: - Messages and Ready

    private func deliverRound() {
        now += 1
        let (deliver, lost) = net.due(now: now, rng: &rng)
        // Like a real transport, report snapshots that could not be delivered.
        for m in lost where m.kind == .snapshot { node(m.from)?.node?.reportSnapshot(m.to, succeeded: false) }
        for m in deliver {
            guard let target = node(m.to), let rn = target.node else {
                if m.kind == .snapshot { node(m.from)?.node?.reportSnapshot(m.to, succeeded: false) }
                continue
            }
            if config.traceMessages { record("deliver \(m)") }
            rn.step(m)
            if m.kind == .snapshot { node(m.from)?.node?.reportSnapshot(m.to, succeeded: true) }
        }
    }

    func send(_ m: Message) {
        let delivered = net.send(
            m, now: now, rng: &rng,
            dropPerMille: faultsActive ? config.dropPerMille : 0,
            dupPerMille: faultsActive ? config.duplicatePerMille : 0,
            maxDelay: config.maxDelay)
        if !delivered && m.kind == .snapshot { node(m.from)?.node?.reportSnapshot(m.to, succeeded: false) }
    }

    func processAllReady() {
        var progress = true
        while progress && failure == nil {
            progress = false
            for n in nodes {
                guard let rn = n.node, rn.hasReady else { continue }
                progress = true
                handleReady(n, rn)
            }
        }
    }

    private func handleReady(_ n: SimNode, _ rn: RawNode) {
        let rd = rn.ready()
        for m in rd.messages { send(m) }
        if faultsActive && rng.chance(config.crashMidReadyPerMille, in: 1000) {
            // Crash after the early messages left but before anything was persisted.
            n.crash()
            workload.nodeCrashed(n.id, sim: self)
            count("crash-mid-ready");
            record(
                "crash \(n.id) mid-ready (\(rd.entries.count) entries, hardState \(rd.hardState.map(\.description) ?? "-") lost)"
            )
            return
        }
        if let snap = rd.snapshot { n.storage.applySnapshot(snap) }
        n.storage.append(rd.entries)
        if let hs = rd.hardState { n.storage.setHardState(hs) }
        for m in rd.messagesAfterPersist { send(m) }
        if let snap = rd.snapshot {
            n.registers = SimNode.decodeRegisters(snap.data, count: config.keys)
            n.applied = snap.metadata.index
            n.confState = snap.metadata.confState
            n.installedSnapshotAt = snap.metadata.index
            stats.snapshots += 1
            record("\(n.id) installed snapshot at \(snap.metadata.index)")
        }
        for e in rd.committedEntries {
            n.apply(e) { entry in invariants.applied(entry, by: n.id, sim: self) }
            if case .confChange(let cc) = e.payload {
                stats.confChanges += 1
                record("\(n.id) applied conf \(cc) at \(e.index) -> \(n.confState)")
            }
        }
        n.readStates += rd.readStates
        if let ss = rd.softState {
            if ss.role == .leader && n.lastSoftRole != .leader {
                stats.leaderChanges += 1
                record("\(n.id) became leader term \(rn.term)")
                invariants.checkNewLeader(n, sim: self)
            } else if ss.role != n.lastSoftRole {
                record("\(n.id) is \(ss.role) term \(rn.term)")
            }
            n.lastSoftRole = ss.role
        }
        rn.advance(rd)
        if rn.role == .leader { invariants.checkLeaderUnique(n.id, term: rn.term, sim: self) }
        workload.observe(n, sim: self)
    }
}

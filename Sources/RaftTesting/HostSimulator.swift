import Foundation
import RaftConsensus
import RaftEngine
import Synchronization

/// A seeded simulation of several node hosts driving their shards directly (no threads
/// but the WALs' writers, which the simulator waits for): a lossy, reordering network with
/// partitions, WAL units completed late (a crash loses those not yet completed, and may
/// leave a prefix of the next one durable), WAL units refused as overloaded and submitted
/// again on the next tick while later units go ahead (as `NodeHost` does), Readies larger
/// than a WAL batch, ticks merged by a busy worker, reads issued on several nodes at once,
/// node crashes and restarts (storage reopened, replicas loaded dormant, a new boot value).
/// The per-group safety invariants of the consensus simulator and the shards' own
/// invariants are checked after every step.
public final class HostSimulator {
    public struct Config: Sendable {
        public init() {}
        public var nodes = 3
        public var groups = 24
        public var steps = 3_000
        public var ticksEvery = 4
        public var lossPercent = 5
        public var maxDelaySteps = 6
        public var proposalPercent = 30
        public var crashPercent = 1
        public var partitionPercent = 1
        public var quietSteps = 2_400
        /// WAL units refused as overloaded (parked until the next tick).
        public var walOverloadPercent = 8
        /// Proposals of a few KiB (WAL batches are 8 KiB: such Readies span batches).
        public var largeProposalPercent = 15
        /// Ticks a busy worker merges (its shard is not ticked, the clock still moves).
        public var mergedTickPercent = 15
        /// Reads issued on every node of a group at the same moment.
        public var readBurstPercent = 20
        /// Membership changes per thousand steps (add a learner and join it, promote, swap
        /// in for a voter by joint consensus, remove), at the group's leader.
        public var membershipPerMille = 0
        /// Nodes holding each group's first members (nil: every node).
        public var initialMembers: Int?
    }

    final class SimNode {
        let storage: Storage
        let shard: HostShard
        var liveness: NodeLiveness
        let boot: UInt64
        var writes: [(due: Int, token: UInt64, writes: [[GroupWrite]])] = []
        /// Units refused as overloaded, submitted again on the next tick.
        var parked: [(token: UInt64, writes: [[GroupWrite]])] = []
        /// Retired replicas whose deletion waits for their WAL writes in flight.
        var retiring: [RetiredReplica] = []
        var jobs: [ApplyJob] = []

        init(storage: Storage, shard: HostShard, liveness: NodeLiveness, boot: UInt64) {
            self.storage = storage
            self.shard = shard
            self.liveness = liveness
            self.boot = boot
        }
    }

    public let seed: UInt64
    public let config: Config
    var rng: SplitMix64
    let directory: TemporaryDirectory
    let clusterID = ClusterID.random()
    let nodeIDs: [NodeID]
    let names: [StorageName]
    let map: ClusterMap
    let machines = MachineRegistry { RecordingStateMachine() }
    var nodes: [SimNode?]
    var network: [(due: Int, frame: PeerFrame)] = []
    var cut: Set<[Int]> = []
    var step = 0
    var tickCount: UInt64 = 0
    public let outcomes = Outcomes()
    var leaders: [PartitionKey: [Term: MemberID]] = [:]
    var keys: [PartitionKey] = []
    var trace: [String] = []
    var crashedUntil: [Int: Int] = [:]
    var healAt = 0
    var options: NodeHost.Options
    /// The simulated monotonic clock: one tick is `tickMilliseconds` (leases use it).
    final class Clock: @unchecked Sendable { var nanoseconds = 0 }
    let clockBox = Clock()
    /// What the run did (so a test can tell a vacuous run from a real one).
    public private(set) var crashes = 0
    public private(set) var partitions = 0
    public private(set) var proposals = 0
    public private(set) var overloads = 0
    public private(set) var largeProposals = 0
    public private(set) var partialUnits = 0
    public private(set) var mergedTicks = 0
    /// Replicas joined and replicas retired.
    public var joins = 0
    public var retirements = 0
    /// Membership changes committed (`changes`), and learners whose change committed,
    /// waiting for their replica to be created; filled by promises (single-threaded run).
    final class Membership: @unchecked Sendable {
        var changes = 0
        var pendingJoins: [(key: PartitionKey, member: MemberID, node: Int, since: Int)] = []
    }
    let membership = Membership()
    public var membershipChanges: Int { membership.changes }

    public init(seed: UInt64, config: Config = Config()) throws {
        self.seed = seed
        self.config = config
        rng = SplitMix64(seed: seed)
        directory = try TemporaryDirectory("raftd-hostsim")
        var g = SplitMix64(seed: seed ^ 0xABCDEF)
        var ids: [NodeID] = []
        for _ in 0..<config.nodes { ids.append(NodeID.random(using: &g)) }
        ids.sort()
        let names = try (0..<config.nodes).map { try StorageName("sim\($0)") }
        nodeIDs = ids
        self.names = names
        map = try ClusterMap(Dictionary(uniqueKeysWithValues: (0..<config.nodes).map { (ids[$0], [names[$0]]) }))
        nodes = Array(repeating: nil, count: config.nodes)
        options = NodeHost.Options()
        options.workers = 1
        options.electionTicks = 10
        options.heartbeatTicks = 1
        options.livenessIntervalTicks = 2
        options.livenessTimeoutTicks = 10
        options.quiesceAfterIdleTicks = 3
        options.dormantAfterQuiescedTicks = 15
        options.maxCampaignsPerTick = 4
        options.requestTimeoutTicks = 60
        options.seed = seed
    }

    deinit { directory.remove() }

    func note(_ s: String) {
        trace.append("step \(step): \(s)")
        if trace.count > 400 { trace.removeFirst(100) }
    }

    func factory(for node: SimNode?, storage: Storage, slot: Int, boot: UInt64 = 0) -> (ShardContext, ReplicaFactory) {
        let context = ShardContext(
            options: options, nodes: nodeIDs, selfSlot: slot, logs: [storage.log], storageNames: [names[slot]],
            clock: MonotonicClock { [clockBox] in clockBox.nanoseconds }, boot: node?.boot ?? boot, cluster: map)
        let machines = self.machines
        let f = ReplicaFactory(
            context: context, stateMachines: { replica, _, _ in machines.machine(node: slot, replica: replica) })
        return (context, f)
    }

    func open(_ i: Int, fresh: Bool) throws {
        let root = directory.file("node\(i)")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var wal = SharedLog.Options()
        wal.segmentSize = 1 << 20
        wal.maxBatchBytes = 8 << 10
        wal.maxQueuedBytes = 4 << 20
        let storage = try Storage(
            root: root, clusterID: clusterID, name: names[i], nodeID: nodeIDs[i], createIfMissing: true, walOptions: wal
        )
        // The boot value comes from the metadata store, as `NodeHost` takes it.
        let boot = try storage.metadata.lastBoot() + 1
        try storage.metadata.recordBoot(boot)
        let (context, f) = factory(for: nil, storage: storage, slot: i, boot: boot)
        let shard = HostShard(index: 0, context: context, seed: rng.next())
        shard.currentTick = tickCount
        let node = SimNode(
            storage: storage, shard: shard,
            liveness: NodeLiveness(
                peerCount: config.nodes, selfSlot: i,
                timeoutNanoseconds: options.livenessTimeoutTicks * options.tickMilliseconds * 1_000_000,
                now: clockBox.nanoseconds),
            boot: boot)
        if !fresh {
            let loaded = try f.load(storage: storage, slot: 0)
            for r in loaded.replicas { shard.add(r, campaign: false) }
            // Removals a crash interrupted: finished now, as `NodeHost` does at start.
            for item in loaded.leaving { try item.deleteData(in: storage) }
        }
        nodes[i] = node
    }

    func createGroups() throws {
        keys = (0..<config.groups).map {
            PartitionKey(authority: names[0], partitionID: try! PartitionID(UInt64($0) + 2))
        }
        let first = config.initialMembers ?? config.nodes
        let route = (0..<first).map {
            RouteReplica(member: MemberID(UInt64($0 + 1)), storage: names[$0], role: .voter)
        }
        for i in 0..<first {
            let node = nodes[i]!
            let (_, f) = factory(for: node, storage: node.storage, slot: i)
            let stored = try StoredConfState(voters: route.map(\.member))
            let records = try node.storage.metadata.createRaftReplicas(
                keys.map {
                    MetadataStore.NewReplica(
                        key: $0, route: try! RouteEntry(version: RouteVersion(term: 0, index: 0), replicas: route),
                        confState: stored)
                })
            for (n, key) in keys.enumerated() {
                let r = try f.makeReplica(
                    key: ReplicaKey(partition: key, member: MemberID(UInt64(i + 1))), group: records[n].group,
                    storageSlot: 0, route: route, confState: ConfState(stored), applied: .zero)
                node.shard.add(r, campaign: n % first == i)
            }
        }
    }

    func crash(_ i: Int) {
        guard let node = nodes[i] else { return }
        crashes += 1
        note("crash node \(i) (\(node.writes.count) WAL units not yet durable are lost)")
        // The WAL writes a unit's batches in order, each durable before the next: a crash
        // can leave a prefix of the first unit not yet completed.
        if let first = node.writes.first, rng.next(below: 2) == 0 {
            for writes in first.writes where !writes.isEmpty {
                let prefix = randomPrefix(of: writes)
                if !prefix.isEmpty {
                    partialUnits += 1
                    try? node.storage.log.append(prefix)
                }
            }
        }
        // Requests in flight on the crashed node are never answered (the client sees a
        // timeout); they are not acknowledged, so they carry no durability promise.
        node.storage.close()
        nodes[i] = nil
        network.removeAll { $0.frame.to == nodeIDs[i] }
    }

    func deliver(_ frame: PeerFrame) {
        guard let from = nodeIDs.firstIndex(of: frame.from), let to = nodeIDs.firstIndex(of: frame.to) else { return }
        if cut.contains([from, to]) || rng.next(below: 100) < config.lossPercent { return }
        network.append((step + 1 + rng.next(below: config.maxDelaySteps), frame))
    }

    func run(_ i: Int) {
        guard let node = nodes[i] else { return }
        // Durable WAL batches (completed in order, some late).
        while let first = node.writes.first, first.due <= step {
            node.writes.removeFirst()
            for (slot, writes) in first.writes.enumerated() where !writes.isEmpty {
                do { try node.storage.log.append(writes) } catch {
                    fatalError("seed \(seed): WAL append failed: \(error)")
                }
                node.shard.durable(token: first.token, slot: slot, result: .success(()))
            }
        }
        // Apply jobs.
        let jobs = node.jobs
        node.jobs = []
        for job in jobs {
            let failure = job.run()
            node.shard.applied(
                job.target.key, through: job.through, confState: job.confState, route: job.route,
                entries: job.entries.count, failure: failure)
        }
        let out = node.shard.runTurn()
        node.shard.checkInvariants()
        for slot in out.frames.indices where !out.frames[slot].isEmpty {
            let frame = PeerFrame(
                from: nodeIDs[i], to: nodeIDs[slot], senderBoot: node.boot, messages: out.frames[slot])
            if slot == i { node.shard.deliver(frame.messages, fromSlot: i) } else { deliver(frame) }
        }
        if out.hasWrites { submit(node, token: out.token, writes: out.writes) }
        node.jobs += out.applyJobs
        node.retiring += out.retired
        // The simulated WAL makes units durable late: a retired replica's log is removed
        // once none of its writes waits (the real WAL keeps the order of the two).
        let waiting = Set(
            (node.writes.flatMap { $0.writes } + node.parked.flatMap { $0.writes }).flatMap { $0 }.map(\.group))
        let ready = node.retiring.filter { !waiting.contains($0.group) }
        node.retiring.removeAll { !waiting.contains($0.group) }
        for item in ready {
            do { try item.deleteData(in: node.storage) } catch {
                fatalError("seed \(seed): deleting retired \(item.key) on node \(i): \(error)")
            }
            retirements += 1
            note("node \(i): \(item.key) retired (\(item.reason))")
            node.shard.forget(item.key)
        }
    }

    /// Hands a turn's WAL units to the (simulated) WAL: refused whole as overloaded now and
    /// then (parked, submitted again on the next tick, as `NodeHost` does), else durable
    /// after a random delay, in order.
    func submit(_ node: SimNode, token: UInt64, writes: [[GroupWrite]]) {
        if rng.next(below: 100) < config.walOverloadPercent {
            overloads += 1
            node.parked.append((token, writes))
            return
        }
        let due = max(step, node.writes.last?.due ?? 0) + rng.next(below: 3)
        node.writes.append((due, token, writes))
    }

    /// A prefix of a unit as the WAL could leave it durable: whole writes, then part of one
    /// (some of its entries, without its hard state, which comes last).
    func randomPrefix(of unit: [GroupWrite]) -> [GroupWrite] {
        let cut = rng.next(below: unit.count)
        var prefix = Array(unit.prefix(cut))
        var partial = unit[cut]
        partial.hardState = nil
        partial.entries = Array(partial.entries.prefix(rng.next(below: partial.entries.count + 1)))
        if !partial.entries.isEmpty { prefix.append(partial) }
        return prefix
    }

    func tick() {
        tickCount += 1
        clockBox.nanoseconds = Int(tickCount) * options.tickMilliseconds * 1_000_000
        for i in nodes.indices {
            guard let node = nodes[i] else { continue }
            let parked = node.parked
            node.parked = []
            for unit in parked { submit(node, token: unit.token, writes: unit.writes) }
            for event in node.liveness.tick(now: clockBox.nanoseconds) {
                switch event {
                case .down(let slot):
                    note("node \(i) declares node \(slot) dead")
                    node.shard.nodeDown(slot)
                case .up(let slot):
                    note("node \(i) sees node \(slot) alive")
                    node.shard.nodeUp(slot)
                case .restarted(let slot):
                    note("node \(i) sees node \(slot) restarted")
                    node.shard.nodeDown(slot)
                    node.shard.nodeUp(slot)
                }
            }
            if tickCount % UInt64(options.livenessIntervalTicks) == 0 {
                for j in nodes.indices where j != i {
                    deliver(PeerFrame(from: nodeIDs[i], to: nodeIDs[j], senderBoot: node.boot, messages: []))
                }
            }
            // A busy worker merges queued ticks: its shard misses this one.
            if rng.next(below: 100) < config.mergedTickPercent {
                mergedTicks += 1
                continue
            }
            node.shard.tick()
        }
    }

    /// A request deadline, 60 ticks from now on the shared clock.
    var deadline: Int { clockBox.nanoseconds + 60 * options.tickMilliseconds * 1_000_000 }

    /// Half the requests go to three hot groups, so that leadership changes meet traffic.
    func pickKey() -> PartitionKey {
        rng.next(below: 2) == 0 ? keys[rng.next(below: min(3, keys.count))] : keys[rng.next(below: keys.count)]
    }

    /// A ReadIndex read of every group on every node (answers are not checked here).
    func touchEveryGroup() {
        for key in keys {
            for node in nodes {
                node?.shard.handle(.read(key, .readIndex, deadlineNanoseconds: deadline) { _ in })
            }
        }
    }

    /// A read at a node that believes it leads (lease or ReadIndex, at random); sometimes
    /// a read on every node of the group at once (followers forward theirs to the leader,
    /// whose read queue must tell them all apart).
    func read() {
        let key = pickKey()
        let required = outcomes.required(key)
        let outcomes = self.outcomes
        if rng.next(below: 100) < config.readBurstPercent {
            for (i, node) in nodes.enumerated() {
                guard let node else { continue }
                let id = outcomes.issued(node: i, boot: node.boot, deadline: deadline)
                node.shard.handle(
                    .read(key, .readIndex, deadlineNanoseconds: deadline) {
                        outcomes.answered(id)
                        outcomes.recordRead(key, lease: false, required: required, $0)
                    })
            }
            return
        }
        // Any node that believes it leads, a deposed one included: that is where a stale
        // read would come from.
        let believers = nodes.indices.filter { nodes[$0]?.shard.replica(for: key)?.node?.role == .leader }
        let target = believers.isEmpty ? rng.next(below: config.nodes) : believers[rng.next(below: believers.count)]
        guard let node = nodes[target] else { return }
        let lease = rng.next(below: 4) != 0
        let id = outcomes.issued(node: target, boot: node.boot, deadline: deadline)
        node.shard.handle(
            .read(
                key, lease ? .lease : .readIndex, deadlineNanoseconds: deadline,
                {
                    outcomes.answered(id)
                    outcomes.recordRead(key, lease: lease, required: required, $0)
                }))
    }

    func propose() {
        let key = pickKey()
        // Usually at a node that believes it leads; sometimes anywhere (NotLeader answers).
        var target = rng.next(below: config.nodes)
        for i in nodes.indices where nodes[i]?.shard.replica(for: key)?.node?.role == .leader {
            if rng.next(below: 10) < 9 { target = i }
        }
        guard let node = nodes[target] else { return }
        proposals += 1
        var data = Array("s\(seed)-\(step)".utf8)
        if rng.next(below: 100) < config.largeProposalPercent {
            // 2-6 KiB: a few of these in one Ready exceed an 8 KiB WAL batch.
            largeProposals += 1
            data += [UInt8](repeating: UInt8(step & 0xFF), count: 2048 + rng.next(below: 4096))
        }
        let outcomes = self.outcomes
        let payload = data
        let id = outcomes.issued(node: target, boot: node.boot, deadline: deadline)
        node.shard.handle(
            .propose(
                key, payload, deadlineNanoseconds: deadline,
                {
                    outcomes.answered(id)
                    outcomes.record(key, payload, $0)
                }))
    }

    /// Liveness: after the quiet period (every node up, no partition, no traffic for
    /// hundreds of ticks) every group has quiesced: no replica is ticked any more.
    func checkQuiet() -> String? {
        for (i, node) in nodes.enumerated() {
            guard let node else { continue }
            if let r = node.shard.awakeReplicas.first {
                return
                    "\(r.key.partition): still ticked on node \(i) after the quiet period (\(node.shard.awakeReplicas.count) replicas awake there)"
            }
        }
        return nil
    }

    /// Every request on a live node is answered by its deadline (on the clock, whatever
    /// ticks its shard merged), give or take a few ticks.
    func checkDeadlines() -> String? {
        let slack = 5 * options.tickMilliseconds * 1_000_000
        outcomes.lock.lock()
        defer { outcomes.lock.unlock() }
        for (id, r) in outcomes.unanswered.sorted(by: { $0.key < $1.key }) {
            guard let node = nodes[r.node], node.boot == r.boot else { continue }  // lost with a crash
            if clockBox.nanoseconds > r.deadlineNanoseconds + slack {
                return "request \(id) on node \(r.node) not answered 5 ticks after its deadline"
            }
        }
        return nil
    }

    /// Election safety: one leader per group and term, over the whole run.
    func checkLeaders() -> String? {
        for node in nodes {
            guard let node else { continue }
            for key in keys {
                guard let r = node.shard.replica(for: key), let n = r.node, n.role == .leader else { continue }
                if let other = leaders[key]?[n.term], other != r.key.member {
                    return "\(key): members \(other) and \(r.key.member) both led term \(n.term)"
                }
                leaders[key, default: [:]][n.term] = r.key.member
            }
        }
        return nil
    }

    /// Runs the simulation; returns a failure description (with the seed and a trace) or nil.
    public func run() throws -> String? {
        for i in 0..<config.nodes { try open(i, fresh: true) }
        try createGroups()
        let total = config.steps + config.quietSteps
        while step < total {
            step += 1
            let faulty = step < config.steps
            if faulty {
                if rng.next(below: 100) < config.proposalPercent { propose() }
                if rng.next(below: 100) < config.proposalPercent / 2 { read() }
                if rng.next(below: 1000) < config.membershipPerMille { changeMembership() }
                if crashedUntil.isEmpty && rng.next(below: 1000) < config.crashPercent * 10 / 2 {
                    let victim = rng.next(below: config.nodes)
                    crash(victim)
                    crashedUntil[victim] = step + 40 + rng.next(below: 200)
                }
                if cut.isEmpty && rng.next(below: 1000) < config.partitionPercent * 10 / 2 {
                    let victim = rng.next(below: config.nodes)
                    for j in 0..<config.nodes where j != victim {
                        cut.insert([victim, j])
                        if rng.next(below: 3) > 0 { cut.insert([j, victim]) }
                    }
                    healAt = step + 40 + rng.next(below: 300)
                    partitions += 1
                    note("partition isolating node \(victim): \(cut.sorted { $0.lexicographicallyPrecedes($1) })")
                }
            } else if step == config.steps {
                note("healing: every node up, no partitions")
            } else if step == config.steps + 200 {
                // One read of every group on every node, as clients would: a group whose
                // leader died while its replicas (restarted meanwhile) did not know it is
                // leaderless and idle; leaders are found on first use, and a replica that
                // missed the last commit learns it then (docs/HOST.md, "Dormant groups").
                note("touching every group with a read on every node")
                touchEveryGroup()
            }
            if !cut.isEmpty && (step >= healAt || !faulty) {
                cut = []
                note("partition healed")
            }
            for (victim, until) in crashedUntil where until <= step || !faulty {
                try open(victim, fresh: false)
                crashedUntil.removeValue(forKey: victim)
                note("restart node \(victim)")
            }
            // Deliver due frames.
            var later: [(due: Int, frame: PeerFrame)] = []
            for item in network {
                if item.due > step {
                    later.append(item)
                    continue
                }
                guard let to = nodeIDs.firstIndex(of: item.frame.to), let node = nodes[to],
                    let from = nodeIDs.firstIndex(of: item.frame.from)
                else { continue }
                guard node.liveness.heard(from: from, boot: item.frame.senderBoot, now: clockBox.nanoseconds)
                else { continue }
                if !item.frame.messages.isEmpty { node.shard.deliver(item.frame.messages, fromSlot: from) }
            }
            network = later
            if config.membershipPerMille > 0 {
                if step % 50 == 0 { auditRoutes() }
                joinPending()
            }
            for i in rng.permutation(config.nodes) { run(i) }
            if step % config.ticksEvery == 0 { tick() }
            if let problem = checkLeaders() { return failure(problem) }
            if let problem = checkDeadlines() { return failure(problem) }
            if let stale = outcomes.staleReads.first { return failure(stale) }
            if step % 50 == 0, let problem = checkApplied(final: false) { return failure(problem) }
        }
        if let problem = checkApplied(final: true) { return failure(problem) }
        if let problem = checkQuiet() { return failure(problem) }
        for i in nodes.indices { nodes[i]?.storage.close() }
        nodes = Array(repeating: nil, count: config.nodes)
        return nil
    }

    /// Every replica of `key` as its node sees it (printed with a failure).
    func describe(_ key: PartitionKey) -> String {
        var lines: [String] = []
        for i in nodes.indices {
            guard let node = nodes[i], let r = node.shard.replica(for: key) else {
                lines.append("  node \(i): down")
                continue
            }
            var line = "  node \(i): \(r.residency.rawValue) handed=\(r.handedOut) applied=\(r.applied)"
            line += " lagging=\(r.laggingNodes) down=\(node.shard.downNodes.sorted())"
            if let n = r.node {
                line += " \(n.status)".replacingOccurrences(of: "\n", with: "\n    ")
            } else if let d = r.suspended {
                line += " dormant(\(d))"
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    private func failure(_ problem: String) -> String {
        let detail = keys.filter { problem.hasPrefix("\($0):") }
            .map { "\($0):\n" + describe($0) }
            .joined(separator: "\n")
        for i in nodes.indices { nodes[i]?.storage.close() }
        nodes = Array(repeating: nil, count: config.nodes)
        return
            "seed \(seed): \(problem)\n(rerun with `raftd simulate --host --seed \(seed)` or RAFT_HOST_SIM_SEED=\(seed))\n"
            + detail + "\n"
            + trace.suffix(60).joined(separator: "\n")
    }
}

extension SplitMix64 {
    mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) { a.swapAt(i, next(below: i + 1)) }
        return a
    }
}

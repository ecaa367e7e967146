import ArgumentParser
import Foundation
import RaftConsensus
import RaftEngine
import Synchronization

/// `raftd demo`: a local three-node cluster in one process (in-memory transport; each node
/// with its own storage: real WAL and metadata store on disk) that replicates real work:
/// groups are created and elected, writers commit entries to random groups, every replica
/// is checked to have applied the same entries, the node leading a third of the groups is
/// stopped (its groups re-elect, paced) and restarted (its groups come back dormant and
/// catch up without elections). The multi-process cluster arrives with the daemon issue.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a local 3-node cluster that replicates writes, fails over and restarts a node.",
        discussion: "Exits non-zero if any replica disagrees or any acknowledged write is missing."
    )

    @Option(help: "Raft groups (partitions), each with a replica on every node.")
    var groups: Int = 1_000

    @Option(help: "Seconds of writes before and after the failover.")
    var seconds: Double = 5

    @Option(help: "Concurrent writers.")
    var writers: Int = 64

    @Option(
        help:
            "Directory for the three storages (default: a fresh one under the system temporary directory, removed at the end)."
    )
    var dir: String?

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func validate() throws {
        guard (1...100_000).contains(groups) else { throw ValidationError("--groups must be 1...100000") }
        guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be in (0, 3600]") }
        guard (1...4096).contains(writers) else { throw ValidationError("--writers must be 1...4096") }
    }

    func run() async throws {
        let root = dir ?? (FileManager.default.temporaryDirectory.path + "/raftd-demo-\(UUID().uuidString)")
        let removeAtEnd = dir == nil
        let format = self.format
        let say: @Sendable (String) -> Void = { line in if format == .text { print(line) } }
        let demo = try DemoCluster(root: root)
        defer {
            demo.stopAll()
            if removeAtEnd { try? FileManager.default.removeItem(atPath: root) }
        }
        say("raftd demo: 3 nodes in one process, storages under \(root)")
        try demo.startAll()

        var t0 = Date()
        let keys = try demo.create(groups)
        try await demo.waitUntil("every group elected a leader", seconds: 120) {
            await demo.totals().leadershipsGained >= UInt64(groups)
        }
        say("created \(groups) groups x 3 replicas; all elected in \(ms(since: t0)) ms")

        t0 = Date()
        let first = try await demo.writeLoad(keys, writers: writers, seconds: seconds, tag: "a") { n, rate in
            say("  writing: \(n) committed, \(Int(rate)) writes/s")
        }
        say(
            "phase 1: \(first.count) writes committed in \(ms(since: t0)) ms (\(Int(Double(first.count) / seconds)) writes/s)"
        )

        try await demo.waitUntil("every group quiesced", seconds: 60) { await demo.totals().awake == 0 }
        let idle0 = await demo.totals()
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let idle1 = await demo.totals()
        say(
            "quiesced: all groups idle; in 1 s they took \(idle1.ticksGiven - idle0.ticksGiven) ticks and sent \(idle1.messagesSent - idle0.messagesSent) messages"
        )

        // Failover: stop the node leading the groups n % 3 == 0 first.
        let victim = 0
        let led = try await demo.groups(ledBy: victim, keys)
        let before = await demo.totals(except: victim)
        let tick0 = demo.hosts[1]!.currentTick
        t0 = Date()
        demo.crash(victim)
        say("stopped node \(victim), which led \(led.count) groups")
        try await demo.waitUntil("the stopped node's groups have new leaders", seconds: 60) {
            for key in led where await demo.leader(of: key) == nil { return false }
            return true
        }
        let after = await demo.totals(except: victim)
        say(
            "failover: \(led.count) groups re-elected in \(ms(since: t0)) ms (\(demo.hosts[1]!.currentTick - tick0) ticks); \(after.campaigns - before.campaigns) campaigns, at most \(after.maxCampaignsInATick) per tick per worker; \(after.leadershipsGained - before.leadershipsGained) new leaderships"
        )
        let second = try await demo.writeLoad(keys, writers: writers, seconds: seconds / 2, tag: "b") { n, rate in
            say("  writing with a node down: \(n) committed, \(Int(rate)) writes/s")
        }

        // Restart: replicas come back dormant and catch up on first contact.
        t0 = Date()
        try demo.start(victim)
        let loaded = ms(since: t0)
        let restarted = await demo.hosts[victim]!.counters()
        say(
            "restarted node \(victim): \(restarted.dormant) replicas loaded dormant in \(loaded) ms, \(restarted.campaigns) campaigns"
        )
        let third = try await demo.writeLoad(keys, writers: writers, seconds: seconds / 2, tag: "c") { n, rate in
            say("  writing after the restart: \(n) committed, \(Int(rate)) writes/s")
        }
        let acknowledged = first + second + third
        say("checking that all 3 replicas of every group applied the same entries, and every acknowledged write...")
        let check = try await demo.verify(keys, acknowledged: acknowledged)
        if format == .json {
            print(
                "{\"groups\":\(groups),\"writes\":\(acknowledged.count),\"replicasChecked\":\(check.replicas),\"failoverGroups\":\(led.count),\"failoverCampaigns\":\(after.campaigns - before.campaigns),\"restartDormant\":\(restarted.dormant),\"ok\":\(check.problems.isEmpty)}"
            )
        }
        if !check.problems.isEmpty {
            for p in check.problems.prefix(20) { FileHandle.standardError.write(Data("raftd demo: \(p)\n".utf8)) }
            throw ExitCode(1)
        }
        say("ok: \(acknowledged.count) acknowledged writes applied identically on \(check.replicas) replicas")
    }

    private func ms(since t: Date) -> Int { Int(Date().timeIntervalSince(t) * 1000) }
}

/// Folds every applied entry into a checksum, so replicas can be compared.
final class ChecksumStateMachine: StateMachine, @unchecked Sendable {
    private struct State {
        var applied = LogIndex.zero
        var checksum: UInt64 = 0xcbf2_9ce4_8422_2325
        var writes: Set<[UInt8]> = []
        var outOfOrder = 0
    }
    private let state = Mutex(State())

    var appliedIndex: LogIndex { state.withLock { $0.applied } }
    var summary: (applied: LogIndex, checksum: UInt64, outOfOrder: Int) {
        state.withLock { ($0.applied, $0.checksum, $0.outOfOrder) }
    }
    func contains(_ data: [UInt8]) -> Bool { state.withLock { $0.writes.contains(data) } }

    func apply(_ entries: [Entry]) throws(StateMachineError) {
        state.withLock { s in
            for e in entries {
                if e.index != s.applied.next { s.outOfOrder += 1 }
                s.applied = e.index
                guard case .normal(let data) = e.payload, !data.isEmpty else { continue }
                s.writes.insert(data)
                for b in data {
                    s.checksum ^= UInt64(b)
                    s.checksum = s.checksum &* 0x100_0000_01b3
                }
            }
        }
    }
}

/// The three in-process nodes of the demo.
final class DemoCluster: @unchecked Sendable {
    let root: String
    let clusterID = ClusterID.random()
    let nodeIDs: [NodeID]
    let names: [StorageName]
    let map: ClusterMap
    let network = InMemoryNetwork()
    let machines = Mutex<[String: ChecksumStateMachine]>([:])
    private(set) var hosts: [NodeHost?] = [nil, nil, nil]

    init(root: String) throws {
        self.root = root
        let ids = (0..<3).map { _ in NodeID.random() }.sorted()
        let names = try (0..<3).map { try StorageName("demo\($0)") }
        nodeIDs = ids
        self.names = names
        map = try ClusterMap(Dictionary(uniqueKeysWithValues: (0..<3).map { (ids[$0], [names[$0]]) }))
    }

    func machine(_ node: Int, _ key: PartitionKey, _ member: MemberID) -> ChecksumStateMachine {
        machines.withLock { m in
            let name = "\(node)/\(key)/\(member)"
            if let existing = m[name] { return existing }
            let fresh = ChecksumStateMachine()
            m[name] = fresh
            return fresh
        }
    }

    func start(_ i: Int) throws {
        let path = "\(root)/node\(i)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let storage = try Storage(
            root: path, clusterID: clusterID, name: names[i], nodeID: nodeIDs[i], createIfMissing: true)
        var options = NodeHost.Options()
        // Three nodes share this machine's cores: one turn thread each (the default, the
        // core count, is for one node per machine).
        options.workers = 1
        options.tickMilliseconds = 20
        options.maxCampaignsPerTick = 128
        let host = try NodeHost(
            nodeID: nodeIDs[i], cluster: map, storages: [storage], options: options,
            stateMachines: { [self] replica, _, _ in machine(i, replica.partition, replica.member) })
        host.start(transport: network.attach(nodeIDs[i], receiver: host))
        hosts[i] = host
    }

    func startAll() throws { for i in 0..<3 { try start(i) } }

    /// Takes the node off the network first, so nothing it does afterwards reaches the others.
    func crash(_ i: Int) {
        network.detach(nodeIDs[i])
        hosts[i]?.stop()
        hosts[i] = nil
    }

    func stopAll() { for i in 0..<3 { crash(i) } }

    func create(_ count: Int) throws -> [PartitionKey] {
        let keys = try (0..<count).map {
            PartitionKey(authority: names[0], partitionID: try PartitionID(UInt64($0) + 2))
        }
        let replicas = (0..<3).map { RouteReplica(member: MemberID(UInt64($0 + 1)), storage: names[$0], role: .voter) }
        for i in 0..<3 {
            try hosts[i]!.createReplicas(
                keys.enumerated().map { n, key in
                    ReplicaSpec(
                        partition: key, member: MemberID(UInt64(i + 1)), storage: names[i], replicas: replicas,
                        campaign: n % 3 == i)
                })
        }
        return keys
    }

    func totals(except skipped: Int? = nil) async -> HostCounters {
        var t = HostCounters()
        for (i, h) in hosts.enumerated() where i != skipped { if let h { t.add(await h.counters()) } }
        return t
    }

    func leader(of key: PartitionKey) async -> Int? {
        var best: (Int, Term)?
        for (i, h) in hosts.enumerated() {
            guard let h, let s = try? await h.status(of: key), s.role == .leader else { continue }
            if best == nil || s.term > best!.1 { best = (i, s.term) }
        }
        return best?.0
    }

    func groups(ledBy node: Int, _ keys: [PartitionKey]) async throws -> [PartitionKey] {
        var out: [PartitionKey] = []
        for key in keys where await leader(of: key) == node { out.append(key) }
        return out
    }

    func waitUntil(_ what: String, seconds: Double, _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        throw ValidationError("timed out after \(Int(seconds)) s waiting until \(what)")
    }

    /// Writers propose unique entries to random groups for `seconds`, following NotLeader
    /// answers; returns the acknowledged writes.
    func writeLoad(
        _ keys: [PartitionKey], writers: Int, seconds: Double, tag: String,
        progress: @escaping @Sendable (Int, Double) -> Void
    ) async throws -> [(PartitionKey, [UInt8])] {
        let stopAt = Date().addingTimeInterval(seconds)
        let counter = Committed()
        let start = Date()
        return try await withThrowingTaskGroup(of: [(PartitionKey, [UInt8])].self) { group in
            for w in 0..<writers {
                group.addTask { [self] in
                    var mine: [(PartitionKey, [UInt8])] = []
                    var rng = SystemRandomNumberGenerator()
                    var n = 0
                    var leaders: [PartitionKey: Int] = [:]
                    while Date() < stopAt {
                        let key = keys[Int(rng.next() % UInt64(keys.count))]
                        let data = Array("\(tag)-\(w)-\(n)".utf8)
                        n += 1
                        var node = leaders[key] ?? Int(rng.next() % 3)
                        for _ in 0..<20 {
                            guard let host = hosts[node] else {
                                node = (node + 1) % 3
                                continue
                            }
                            do {
                                _ = try await host.propose(key, data)
                                leaders[key] = node
                                mine.append((key, data))
                                counter.value.wrappingAdd(1, ordering: .relaxed)
                                break
                            } catch let error as HostError {
                                guard error.isRetryable else { throw error }
                                if case .notLeader(_, let leaderNode?) = error,
                                    let i = nodeIDs.firstIndex(of: leaderNode)
                                {
                                    node = i
                                } else {
                                    node = (node + 1) % 3
                                    try await Task.sleep(nanoseconds: 5_000_000)
                                }
                            } catch {
                                throw error
                            }
                        }
                    }
                    return mine
                }
            }
            group.addTask {
                while Date() < stopAt {
                    try await Task.sleep(nanoseconds: 1_000_000_000)
                    let n = counter.value.load(ordering: .relaxed)
                    progress(n, Double(n) / Date().timeIntervalSince(start))
                }
                return []
            }
            var all: [(PartitionKey, [UInt8])] = []
            for try await part in group { all += part }
            return all
        }
    }

    /// Waits until every replica of every group applied as far as the most advanced one,
    /// then compares checksums and looks up every acknowledged write.
    func verify(
        _ keys: [PartitionKey], acknowledged: [(PartitionKey, [UInt8])]
    ) async throws -> (
        replicas: Int, problems: [String]
    ) {
        func summaries(_ key: PartitionKey) -> [(applied: LogIndex, checksum: UInt64, outOfOrder: Int)] {
            (0..<3).map { machine($0, key, MemberID(UInt64($0 + 1))).summary }
        }
        try await waitUntil("every replica applied everything", seconds: 60) {
            keys.allSatisfy { key in
                let s = summaries(key)
                return s.allSatisfy { $0.applied == s[0].applied }
            }
        }
        var problems: [String] = []
        for key in keys {
            let s = summaries(key)
            if !s.allSatisfy({ $0.checksum == s[0].checksum }) {
                problems.append("\(key): replicas applied different entries")
            }
            if s.contains(where: { $0.outOfOrder > 0 }) { problems.append("\(key): entries applied out of order") }
        }
        for (key, data) in acknowledged {
            for i in 0..<3 where !machine(i, key, MemberID(UInt64(i + 1))).contains(data) {
                problems.append(
                    "\(key): acknowledged write \(String(decoding: data, as: UTF8.self)) missing on node \(i)")
            }
        }
        return (keys.count * 3, problems)
    }
}

/// A shared count of committed writes (progress output).
final class Committed: Sendable {
    let value = Atomic<Int>(0)
}

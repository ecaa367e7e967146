import ArgumentParser
import Foundation
import RaftConsensus
import RaftEngine
import RaftTesting

/// `raftd demo --in-process`: a local three-node cluster in one process (in-memory
/// transport; each node with its own storage: real WAL and metadata store on disk) that
/// replicates real work: groups are created and elected, writers commit entries to random
/// groups, every replica is checked to have applied the same entries, the node leading a
/// third of the groups is stopped (its groups re-elect, paced) and restarted (its groups
/// come back dormant and catch up without elections). The engine alone, without the
/// daemon, the network or git: the quick look at the node host's behaviour.
struct InProcessDemo {
    var groups: Int
    var seconds: Double
    var writers: Int
    var dir: String?
    var format: OutputFormat

    func run() async throws {
        let root = dir ?? (FileManager.default.temporaryDirectory.path + "/raftd-demo-\(UUID().uuidString)")
        let removeAtEnd = dir == nil
        let format = self.format
        let say: @Sendable (String) -> Void = { line in if format == .text { print(line) } }
        var configuration = LocalCluster<RecordingStateMachine>.Configuration()
        configuration.directory = root
        configuration.storagePrefix = "demo"
        // Three nodes share this machine's cores: one turn thread each (the default, the
        // core count, is for one node per machine).
        configuration.options.workers = 1
        configuration.options.tickMilliseconds = 20
        configuration.options.maxCampaignsPerTick = 128
        let demo = try LocalCluster<RecordingStateMachine>(configuration)
        defer {
            demo.stopAll()
            if removeAtEnd { try? FileManager.default.removeItem(atPath: root) }
        }
        say("raftd demo: 3 nodes in one process, storages under \(root)")
        try demo.startAll()

        var t0 = Date()
        let keys = try demo.createGroups(groups)
        try await demo.waitUntil("every group elected a leader", within: 120) {
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

        try await demo.waitUntil("every group quiesced", within: 60) { await demo.totals().awake == 0 }
        let idle0 = await demo.totals()
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let idle1 = await demo.totals()
        say(
            "quiesced: all groups idle; in 1 s they took \(idle1.ticksGiven - idle0.ticksGiven) ticks and sent \(idle1.messagesSent - idle0.messagesSent) messages"
        )

        // Failover: stop the node leading the groups n % 3 == 0 first.
        let victim = 0
        var led: [PartitionKey] = []
        for key in keys where await demo.leader(of: key) == victim { led.append(key) }
        let before = await demo.totals(except: victim)
        let tick0 = demo.hosts[1]!.currentTick
        t0 = Date()
        demo.crash(victim)
        say("stopped node \(victim), which led \(led.count) groups")
        try await demo.waitUntil("the stopped node's groups have new leaders", within: 60) {
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
        try await demo.waitUntilApplied(keys)
        let problems = demo.checkAgreement(keys, acknowledged: acknowledged)
        let replicasChecked = keys.count * demo.nodeCount
        if format == .json {
            print(
                "{\"groups\":\(groups),\"writes\":\(acknowledged.count),\"replicasChecked\":\(replicasChecked),\"failoverGroups\":\(led.count),\"failoverCampaigns\":\(after.campaigns - before.campaigns),\"restartDormant\":\(restarted.dormant),\"ok\":\(problems.isEmpty)}"
            )
        }
        if !problems.isEmpty {
            for p in problems.prefix(20) { FileHandle.standardError.write(Data("raftd demo: \(p)\n".utf8)) }
            throw ExitCode(1)
        }
        say("ok: \(acknowledged.count) acknowledged writes applied identically on \(replicasChecked) replicas")
    }

    private func ms(since t: Date) -> Int { Int(Date().timeIntervalSince(t) * 1000) }
}

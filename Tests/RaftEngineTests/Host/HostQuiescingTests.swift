import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Host: quiescing, liveness and dormant groups", .serialized)
struct HostQuiescingTests {
    /// Waits until no replica on any live node is ticked.
    private func waitAllQuiesced(_ cluster: HostTestCluster, within seconds: Double = 20) async throws {
        do {
            try await cluster.waitUntil("every replica quiesced", within: seconds) {
                for i in cluster.hosts.indices where cluster.hosts[i] != nil {
                    if await cluster.counters(i).awake != 0 { return false }
                }
                return true
            }
        } catch {
            // Say which replicas stayed awake, and why (printed with the failure).
            var lines: [String] = []
            for i in cluster.hosts.indices { lines += await cluster.describeAwake(i).prefix(6) }
            print("replicas still awake:\n" + lines.joined(separator: "\n"))
            throw error
        }
    }

    private func totals(_ cluster: HostTestCluster) async -> HostCounters {
        var total = HostCounters()
        for i in cluster.hosts.indices where cluster.hosts[i] != nil { total.add(await cluster.counters(i)) }
        return total
    }

    @Test("Host: a quiesced group gets no ticks and sends no messages; a proposal wakes it and commits")
    func quiescedIsSilent() async throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        try cluster.startAll()
        let keys = try cluster.createGroups(300)
        try await waitAllQuiesced(cluster)
        let before = await totals(cluster)
        let tick0 = cluster.hosts[0]!.currentTick
        // 30 ticks (3 election timeouts) of silence.
        try await cluster.waitUntil("30 ticks passed") { cluster.hosts[0]!.currentTick >= tick0 + 30 }
        let after = await totals(cluster)
        let deaths = cluster.hosts.compactMap { $0?.peerDeathCount }.reduce(0, +)
        if after.campaigns != before.campaigns {
            print("quiescence: \(deaths) peer deaths declared so far (a false one makes the groups it led campaign)")
        }
        #expect(after.ticksGiven == before.ticksGiven, "quiesced replicas were ticked")
        #expect(after.messagesSent == before.messagesSent, "quiesced replicas sent messages")
        #expect(after.campaigns == before.campaigns)
        // A proposal wakes the group at once and commits without an election.
        let terms = try await cluster.hosts[0]!.status(of: keys[7]).term
        let index = try await cluster.write(keys[7], Array("wake".utf8), within: 10)
        #expect(index > .zero)
        #expect(try await cluster.hosts[0]!.status(of: keys[7]).term == terms)
        #expect(await totals(cluster).leadershipsGained == before.leadershipsGained)
        // ... and it quiesces again.
        try await waitAllQuiesced(cluster)
    }

    @Test(
        "Host: lease reads: a confirmed ReadIndex round opens a lease; reads within it need no round; later ones fall back"
    )
    func leaseReads() async throws {
        var options = HostTestCluster.testOptions()
        options.electionTicks = 40
        options.livenessTimeoutTicks = 40
        let cluster = try HostTestCluster(options: options)
        defer { cluster.stopAll() }
        try cluster.startAll()
        let key = try cluster.createGroups(3)[0]
        let written = try await cluster.write(key, Array("leased".utf8), within: 10)
        let leader = await cluster.leader(of: key)!
        let host = cluster.hosts[leader]!
        let before = await cluster.counters(leader).leaseReads
        // No lease yet: ReadIndex round, which opens one for 20 ticks from the round's start,
        // at or after `start` and at or before `tick` (a round slowed by load must not make
        // the second read look as if it fell inside a lease that had run out).
        let start = host.currentTick
        #expect(try await host.read(key, consistency: .lease) >= written)
        let tick = host.currentTick
        let leased = try await host.read(key, consistency: .lease)
        let within = host.currentTick < start + 20
        #expect(leased >= written)
        if within { #expect(await cluster.counters(leader).leaseReads == before + 1) }
        // Past the lease: a round again.
        try await cluster.waitUntil("the lease ran out") { host.currentTick >= tick + 25 }
        let after = await cluster.counters(leader).leaseReads
        #expect(try await host.read(key, consistency: .lease) >= written)
        #expect(await cluster.counters(leader).leaseReads == after)
        // A follower never answers from a lease.
        let follower = (leader + 1) % 3
        let f0 = await cluster.counters(follower).leaseReads
        _ = try? await cluster.hosts[follower]!.read(key, consistency: .lease)
        #expect(await cluster.counters(follower).leaseReads == f0)
    }

    @Test(
        "Host: lease reads: an isolated quiesced leader's lease runs out before the others can elect; it never serves a stale read"
    )
    func leaseNeverStale() async throws {
        var options = HostTestCluster.testOptions()
        options.electionTicks = 40  // lease: 20 ticks = 200 ms; no election before 40 ticks of silence
        options.livenessTimeoutTicks = 40
        let cluster = try HostTestCluster(options: options)
        defer { cluster.stopAll() }
        try cluster.startAll()
        let key = try cluster.createGroups(3)[0]  // led first by node 0
        _ = try await cluster.write(key, Array("one".utf8), within: 10)
        let old = await cluster.leader(of: key)!
        let oldHost = cluster.hosts[old]!
        _ = try await oldHost.read(key)  // opens a lease
        try await waitAllQuiesced(cluster)
        // Cut the leader off; the others declare its node dead and elect.
        cluster.network.isolate(cluster.nodeIDs[old], from: cluster.nodeIDs)
        let others = (0..<3).filter { $0 != old }
        try await cluster.waitUntil("a new leader on the majority side", within: 20) {
            for i in others {
                if let s = try? await cluster.hosts[i]!.status(of: key), s.role == .leader { return true }
            }
            return false
        }
        let newLeader = await {
            for i in others {
                if let s = try? await cluster.hosts[i]!.status(of: key), s.role == .leader { return i }
            }
            return others[0]
        }()
        let written = try await cluster.hosts[newLeader]!.propose(key, Array("two".utf8))
        // The deposed leader still believes it leads (quiesced, it does not tick), but its
        // lease is over: it must not answer below `written`.
        #expect(try await oldHost.status(of: key).role == .leader)
        do {
            let index = try await oldHost.read(key, consistency: .lease, timeoutTicks: 20)
            #expect(index >= written, "stale lease read: \(index) < \(written)")
        } catch {
            #expect(error.isRetryable, "\(error)")
        }
        cluster.network.isolate(cluster.nodeIDs[old], from: cluster.nodeIDs, false)
    }

    @Test("Host: dormant groups are rebuilt on demand without an election and serve writes")
    func dormantRehydrates() async throws {
        var options = HostTestCluster.testOptions()
        options.dormantAfterQuiescedTicks = 5
        // What is checked is that rebuilding elects nobody; an election timeout of 100 ms
        // (10 ticks) is shorter than the stalls of a loaded 2-core machine, after which a
        // woken follower campaigns for another reason (seen once in a clean-clone run).
        options.electionTicks = 100
        options.livenessTimeoutTicks = 100
        let cluster = try HostTestCluster(options: options)
        defer { cluster.stopAll() }
        try cluster.startAll()
        let keys = try cluster.createGroups(300)
        try await cluster.waitUntil("every replica dormant") {
            for i in 0..<3 where await cluster.counters(i).dormant != 300 { return false }
            return true
        }
        let before = await totals(cluster)
        for key in keys.prefix(30) {
            _ = try await cluster.write(key, Array("after dormancy".utf8), within: 10)
        }
        let after = await totals(cluster)
        #expect(after.leadershipsGained == before.leadershipsGained, "a dormant group elected again")
        #expect(after.campaigns == before.campaigns)
        #expect(after.rehydrations >= 30)
        // Reads work on rebuilt groups too.
        let leader = await cluster.leader(of: keys[3])!
        let readIndex = try await cluster.hosts[leader]!.read(keys[3])
        #expect(readIndex >= LogIndex(2))
    }

    @Test("Host: a restarted node's groups come back dormant and the first write needs no election")
    func restartServesWithoutElection() async throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        try cluster.startAll()
        let keys = try cluster.createGroups(300)
        for key in keys { _ = try await cluster.write(key, Array("before".utf8), within: 10) }
        try await waitAllQuiesced(cluster)
        // Groups led by nodes 0 and 1; node 2 follows them.
        var stable: [PartitionKey: Term] = [:]
        for key in keys {
            if let l = await cluster.leader(of: key), l != 2 {
                stable[key] = try await cluster.hosts[l]!.status(of: key).term
            }
        }
        #expect(stable.count >= 150)
        cluster.crash(2)
        try cluster.start(2)
        let restarted = await cluster.counters(2)
        // Loaded dormant, every one: some may already have been rebuilt by traffic (the
        // groups node 2 led fail over at once, and their new leaders write to it).
        #expect(restarted.loadedDormant == 300, "restart loads every replica dormant")
        #expect(restarted.campaigns == 0)
        for key in stable.keys.sorted().prefix(50) {
            _ = try await cluster.write(key, Array("after restart".utf8), within: 10)
            let l = await cluster.leader(of: key)!
            #expect(try await cluster.hosts[l]!.status(of: key).term == stable[key], "\(key) elected again")
        }
        // The restarted node's replicas were rebuilt and apply the new writes.
        try await cluster.waitUntil("node 2 applied the writes after restart") {
            for key in stable.keys.sorted().prefix(50) {
                let sm = cluster.machines.existing(node: 2, replica: ReplicaKey(partition: key, member: 3))!
                if sm.writes.last.map({ String(decoding: $0.data, as: UTF8.self) }) != "after restart" { return false }
            }
            return true
        }
    }

    @Test("Host: killing the node that leads N groups re-elects exactly those N, paced")
    func failoverReelectsExactlyThose() async throws {
        var options = HostTestCluster.testOptions()
        options.tickMilliseconds = 20
        options.maxCampaignsPerTick = 32
        options.dormantAfterQuiescedTicks = 10
        let cluster = try HostTestCluster(options: options)
        defer { cluster.stopAll() }
        try cluster.startAll()
        let keys = try cluster.createGroups(600)
        try await cluster.waitUntil("every replica dormant") {
            for i in 0..<3 where await cluster.counters(i).dormant != 600 { return false }
            return true
        }
        var ledByVictim: [PartitionKey] = []
        var others: [PartitionKey: Term] = [:]
        for key in keys {
            let l = await cluster.leader(of: key)
            if l == 0 {
                ledByVictim.append(key)
            } else if let l {
                others[key] = try await cluster.hosts[l]!.status(of: key).term
            }
        }
        // About a third (each group's first leader is preset); elections under CPU pressure
        // can move a few. Whatever node 0 leads, exactly those must re-elect.
        #expect(ledByVictim.count > 100)
        let before = [await cluster.counters(1), await cluster.counters(2)]
        let start = cluster.hosts[1]!.currentTick
        let crashedAt = MonotonicClock.system.nanoseconds
        cluster.crash(0)
        try await cluster.waitUntil("the victim's groups have new leaders", within: 30) {
            for key in ledByVictim where await cluster.leader(of: key) == nil { return false }
            return true
        }
        let elapsed = cluster.hosts[1]!.currentTick - start
        // By the new leaders' own clocks: when the last of them won (the polling above,
        // 200 status calls a round, is slow under the full suite's load).
        var lastWin = crashedAt
        for key in ledByVictim {
            guard let l = await cluster.leader(of: key) else { continue }
            let since = try await cluster.hosts[l]!.status(of: key).leaderSinceNanoseconds
            lastWin = max(lastWin, since ?? crashedAt)
        }
        let reelection = Double(lastWin - crashedAt) / Double(options.tickMilliseconds * 1_000_000)
        let after = [await cluster.counters(1), await cluster.counters(2)]
        let gained =
            (after[0].leadershipsGained - before[0].leadershipsGained)
            + (after[1].leadershipsGained - before[1].leadershipsGained)
        print(
            "failover: \(ledByVictim.count) groups re-elected within \(String(format: "%.1f", reelection)) ticks by the leaders' clocks (\(elapsed) ticks until the test saw it); campaigns per tick max \(after[0].maxCampaignsInATick), \(after[1].maxCampaignsInATick); campaigns \(after[0].campaigns - before[0].campaigns) + \(after[1].campaigns - before[1].campaigns)"
        )
        #expect(gained == UInt64(ledByVictim.count), "exactly the dead node's groups elect")
        // A liveness bound, not a speed target (the 3x target is measured by HostBench and the
        // demo on a quiet machine): re-election must not wait for anything but detection and
        // pacing. Measured by the leaders' clocks: 39 ticks on a quiet machine, 45 and 66
        // under the full suite's load on two cores (with some campaigns repeated: turns
        // starved of CPU); by the test's polling it was once 122. A group that never
        // re-elects fails the wait above.
        #expect(reelection <= Double(20 * options.electionTicks), "re-election took \(reelection) ticks")
        let perShard = UInt64(max(1, options.maxCampaignsPerTick / options.workers))
        #expect(after[0].maxCampaignsInATick <= perShard && after[1].maxCampaignsInATick <= perShard)
        // Groups led by the survivors kept their leader and term.
        for (key, term) in others.sorted(by: { $0.key < $1.key }).prefix(100) {
            let l = await cluster.leader(of: key)!
            #expect(try await cluster.hosts[l]!.status(of: key).term == term)
        }
        // The new leaders serve writes.
        for key in ledByVictim.prefix(20) { _ = try await cluster.write(key, Array("failover".utf8), within: 10) }
    }
}

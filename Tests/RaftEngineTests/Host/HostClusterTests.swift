import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Host: in-process clusters", .serialized)
struct HostClusterTests {
    @Test("Host: 3 nodes x 1,000 groups: writes to random groups commit and apply in order on every replica")
    func thousandGroups() async throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        try cluster.startAll()
        let keys = try cluster.createGroups(1_000)
        var rng = SplitMix64(seed: 42)
        let plan = (0..<3_000).map { n in (keys[Int(rng.next() % UInt64(keys.count))], Array("w\(n)".utf8)) }
        // 64 writers.
        let acked = try await withThrowingTaskGroup(of: [(PartitionKey, [UInt8], LogIndex)].self) { group in
            for w in 0..<64 {
                group.addTask {
                    var mine: [(PartitionKey, [UInt8], LogIndex)] = []
                    for i in stride(from: w, to: plan.count, by: 64) {
                        let (key, data) = plan[i]
                        mine.append((key, data, try await cluster.write(key, data, within: 60)))
                    }
                    return mine
                }
            }
            var all: [(PartitionKey, [UInt8], LogIndex)] = []
            for try await part in group { all += part }
            return all
        }
        #expect(acked.count == plan.count)
        // Every acknowledged write is applied on every replica at its index, and all
        // replicas of a group applied the same sequence.
        let byKey = Dictionary(grouping: acked, by: { $0.0 })
        try await cluster.waitUntil("every replica applied every acknowledged write", within: 30) {
            for (key, writes) in byKey {
                let last = writes.map(\.2).max()!
                for node in 0..<3 {
                    let sm = cluster.machines.existing(
                        node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
                    guard let sm, sm.appliedIndex >= last else { return false }
                }
            }
            return true
        }
        for (key, writes) in byKey {
            let sequences = (0..<3).map { node in
                cluster.machines.existing(
                    node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))!
            }
            for sm in sequences { #expect(sm.violations.isEmpty, "\(key): \(sm.violations)") }
            let reference = sequences[0].writes
            for sm in sequences.dropFirst() {
                let other = sm.writes
                #expect(
                    other.count == reference.count
                        && zip(other, reference).allSatisfy { $0.index == $1.index && $0.data == $1.data },
                    "\(key): replicas applied different sequences")
            }
            let applied = Dictionary(uniqueKeysWithValues: reference.map { ($0.index, $0.data) })
            for (_, data, index) in writes {
                #expect(applied[index] == data, "\(key): write at \(index) missing or different")
            }
        }
        var walWrites: UInt64 = 0
        for i in 0..<3 { walWrites += await cluster.counters(i).walWrites }
        #expect(walWrites > 0)
    }

    @Test("Host: one turn's writes larger than a WAL batch are split into chunks; every proposal commits")
    func largeTurnIsChunked() async throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        try cluster.startAll()
        // Groups 0, 3, 6, ... are led by node 0 first.
        let keys = try cluster.createGroups(30).enumerated().filter { $0.offset % 3 == 0 }.map(\.element)
        for key in keys { _ = try await cluster.write(key, [0], within: 10) }
        // Ten 900 KiB proposals at once: about 9 MiB in one turn against a 2 MiB batch limit.
        let big = [UInt8](repeating: 0xAB, count: 900 << 10)
        let indexes = try await withThrowingTaskGroup(of: LogIndex.self) { group in
            for key in keys { group.addTask { try await cluster.write(key, big, within: 30) } }
            var all: [LogIndex] = []
            for try await i in group { all.append(i) }
            return all
        }
        #expect(indexes.count == keys.count)
    }

    @Test("Host: bad options and a bad replica spec are refused with a clear error")
    func badConfiguration() throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        cluster.options.maxProposalBytes = 64 << 20
        #expect(throws: HostError.self) { try cluster.start(0) }
        cluster.options = HostTestCluster.testOptions()
        cluster.options.electionTicks = 1
        #expect(throws: HostError.self) { try cluster.start(0) }
        cluster.options = HostTestCluster.testOptions()
        try cluster.start(0)
        let host = cluster.hosts[0]!
        let wrongStorage = ReplicaSpec(
            partition: cluster.key(0), member: 1, storage: cluster.storageNames[1],
            replicas: [RouteReplica(member: 1, storage: cluster.storageNames[1], role: .voter)])
        #expect(throws: HostError.self) { try host.createReplicas([wrongStorage]) }
        let notAMember = ReplicaSpec(
            partition: cluster.key(0), member: 2, storage: cluster.storageNames[0],
            replicas: [RouteReplica(member: 1, storage: cluster.storageNames[0], role: .voter)])
        #expect(throws: HostError.self) { try host.createReplicas([notAMember]) }
    }

    @Test("Host: a membership change commits, applies, is recorded with its index and survives a restart")
    func membershipChange() async throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        try cluster.startAll()
        let key = try cluster.createGroups(3)[1]  // led first by member 2 on node 1
        _ = try await cluster.write(key, Array("before".utf8), within: 10)
        let leader = await cluster.leader(of: key)!
        let host = cluster.hosts[leader]!
        // Remove member 3 (node 2), unless it leads; then remove member 1.
        let removed: MemberID = leader == 2 ? 1 : 3
        let index = try await host.changeMembership(key, ConfChange([.remove(removed)]))
        #expect(index > .zero)
        // A change with more edits than a log entry may carry is refused before proposing.
        do {
            _ = try await host.changeMembership(key, ConfChange((10...80).map { .addLearner(MemberID(UInt64($0))) }))
            Issue.record("an oversized membership change was accepted")
        } catch {
            #expect(!error.isRetryable, "\(error)")
        }
        _ = try await cluster.write(key, Array("after".utf8), within: 10)
        // The applied index and the configuration are recorded together; after a restart
        // the replica starts from them.
        let survivor = (0..<3).first { $0 != leader && MemberID(UInt64($0 + 1)) != removed }!
        try await cluster.waitUntil("applied indices recorded") {
            cluster.hosts[survivor]!.currentTick > 30
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        cluster.crash(survivor)
        try cluster.start(survivor)
        let restarted = cluster.hosts[survivor]!
        let conf: ConfState = await withCheckedContinuation { continuation in
            restarted.workers[restarted.shardIndex(key)].post(
                .call { shard in continuation.resume(returning: shard.replica(for: key)!.stableLog.confState) })
        }
        #expect(!conf.voters.contains(removed) && conf.voters.count == 2, "\(conf)")
        _ = try await cluster.write(key, Array("after restart".utf8), within: 10)
    }
}

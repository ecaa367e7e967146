import Foundation
import RaftConsensus
import RaftEngine
import RaftTesting
import Testing

@testable import RaftTransport

/// Node hosts in one process on real sockets: the engine over the network transport.
@Suite("Transport: node hosts over TCP", .serialized)
struct TCPClusterTests {
    static func configuration() -> LocalCluster<RecordingStateMachine>.Configuration {
        var c = LocalCluster<RecordingStateMachine>.Configuration()
        c.tcp = true
        c.options.workers = 2
        c.options.applyWorkers = 1
        c.options.tickMilliseconds = 10
        c.options.electionTicks = 10
        c.options.heartbeatTicks = 1
        c.options.livenessIntervalTicks = 2
        c.options.livenessTimeoutTicks = 30
        c.options.quiesceAfterIdleTicks = 3
        c.options.requestTimeoutTicks = 300
        c.walOptions.segmentSize = 8 << 20
        c.walOptions.maxBatchBytes = 2 << 20
        c.walOptions.maxQueuedBytes = 32 << 20
        c.options.maxProposalBytes = 1 << 20
        return c
    }

    @Test(
        "Transport: the minting node asks another node's leader of its partition to hand the leadership over; other nodes may not"
    )
    func transferLeadershipOnPeer() async throws {
        let cluster = try LocalCluster<RecordingStateMachine>(Self.configuration())
        defer { cluster.stopAll() }
        try cluster.startAll()
        // Group 1 is minted on node 0's storage and led first by node 1.
        let key = try cluster.createGroups(2)[1]
        _ = try await cluster.write(key, Array("first".utf8), within: 30)
        if await cluster.leader(of: key) == 0 {
            // Node 0 won the first election (it can under load): move the leadership away
            // first, so that the minting node has another node to ask.
            let away = try await cluster.hosts[1]!.status(of: key).replica.member
            try await cluster.hosts[0]!.transferLeadership(key, to: away)
            try await cluster.waitUntil("node 1 leads", within: 10) { await cluster.leader(of: key) == 1 }
        }
        let first = try #require(await cluster.leader(of: key))
        let target = 0
        let member = try await cluster.hosts[target]!.status(of: key).replica.member
        // A node that did not mint it is refused (once its bulk connection is up), and
        // nothing moves.
        let stranger = first == 2 ? 1 : 2
        try await cluster.waitUntil("node \(first) refuses node \(stranger)", within: 10) {
            do {
                try await cluster.hosts[stranger]!.transferLeadershipOnPeer(key, to: member, at: cluster.nodeIDs[first])
                return false
            } catch let error as HostError {
                if case .invalid = error { return true }
                return false
            } catch {
                return false
            }
        }
        #expect(await cluster.leader(of: key) == first)
        // Node 0 minted it: the leader hands over to the member it names (asked again while
        // the bulk connection, dialled beside the frame connection, is still coming up).
        try await cluster.waitUntil("node \(first) accepts the hand-over", within: 10) {
            (try? await cluster.hosts[0]!.transferLeadershipOnPeer(key, to: member, at: cluster.nodeIDs[first])) != nil
        }
        try await cluster.waitUntil("node \(target) leads", within: 10) { await cluster.leader(of: key) == target }
        _ = try await cluster.write(key, Array("after".utf8), within: 30)
    }

    @Test("Transport: 3 hosts x 100 groups on TCP: writes commit; a crashed node's groups re-elect; it catches up")
    func crashAndCatchUp() async throws {
        let cluster = try LocalCluster<RecordingStateMachine>(Self.configuration())
        defer { cluster.stopAll() }
        try cluster.startAll()
        let keys = try cluster.createGroups(100)
        var acknowledged: [(PartitionKey, [UInt8])] = []
        for (n, key) in keys.enumerated() {
            let data = Array("before-\(n)".utf8)
            _ = try await cluster.write(key, data, within: 30)
            acknowledged.append((key, data))
        }
        // Crash the node leading the most groups; the others keep taking writes.
        var led = [0, 0, 0]
        for key in keys { if let leader = await cluster.leader(of: key) { led[leader] += 1 } }
        let victim = led.indices.max { led[$0] < led[$1] }!
        cluster.crash(victim)
        for (n, key) in keys.enumerated() {
            let data = Array("during-\(n)".utf8)
            _ = try await cluster.write(key, data, within: 30)
            acknowledged.append((key, data))
        }
        try cluster.start(victim)
        for (n, key) in keys.enumerated() {
            let data = Array("after-\(n)".utf8)
            _ = try await cluster.write(key, data, within: 30)
            acknowledged.append((key, data))
        }
        try await cluster.waitUntilApplied(keys, within: 60)
        let problems = cluster.checkAgreement(keys, acknowledged: acknowledged)
        #expect(problems.isEmpty, "\(problems.prefix(5))")
        let stats = (0..<3).compactMap { cluster.tcpNetwork?.transport(cluster.nodeIDs[$0])?.statistics }
        #expect(stats.count == 3 && stats.allSatisfy { $0.framesReceived > 0 && $0.refusals.isEmpty })
    }
}

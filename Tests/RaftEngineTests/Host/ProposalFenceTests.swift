import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Host: fenced proposals")
struct ProposalFenceTests {
    func propose(_ host: NodeHost, _ key: PartitionKey, _ fence: ProposalFence) async -> Result<LogIndex, HostError> {
        await withCheckedContinuation { continuation in
            host.propose(key, Array("x".utf8), fence: fence) { continuation.resume(returning: $0) }
        }
    }

    @Test(
        "Host: a fenced proposal needs the leader's exact term; once one is refused, the rest of its epoch are refused too, a later epoch goes in"
    )
    func fence() async throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        try cluster.startAll()
        let key = try cluster.createGroups(1)[0]
        _ = try await cluster.write(key, Array("first".utf8))
        let node = try #require(await cluster.leader(of: key))
        let host = cluster.hosts[node]!
        let term = try await host.status(of: key).term
        // The right term and a fresh epoch: appended and applied.
        guard case .success = await propose(host, key, ProposalFence(term: term, epoch: 10)) else {
            Issue.record("a fenced proposal in the leader's term was refused")
            return
        }
        // Another term: refused, and it fences its epoch.
        #expect(await propose(host, key, ProposalFence(term: term.next, epoch: 11)) == .failure(.lostLeadership))
        #expect(await propose(host, key, ProposalFence(term: term, epoch: 11)) == .failure(.lostLeadership))
        #expect(await propose(host, key, ProposalFence(term: term, epoch: 9)) == .failure(.lostLeadership))
        // A caller that caught up moves to a later epoch.
        guard case .success = await propose(host, key, ProposalFence(term: term, epoch: 12)) else {
            Issue.record("a later epoch was refused")
            return
        }
        // Unfenced proposals are not affected.
        _ = try await cluster.write(key, Array("unfenced".utf8))
    }
}

import Testing

@testable import RaftConsensus

/// Three members over memory storages with a synchronous network that can drop a member.
private final class Trio {
    var nodes: [MemberID: RawNode] = [:]
    var storages: [MemberID: MemoryStableLog] = [:]
    var down: Set<MemberID> = []
    var sent: [Message] = []
    let ids: [MemberID] = [1, 2, 3]
    let configure: (inout RaftConfig) -> Void

    init(configure: @escaping (inout RaftConfig) -> Void = { _ in }) {
        self.configure = configure
        for id in ids {
            let storage = MemoryStableLog(confState: ConfState(voters: ids))
            storages[id] = storage
            nodes[id] = RawNode(config: config(id), log: storage)
        }
    }

    func config(_ id: MemberID) -> RaftConfig {
        var c = RaftConfig(id: id)
        c.seed = 7
        configure(&c)
        return c
    }

    /// Handles Readies and delivers messages until nothing moves.
    func stabilize() {
        var moved = true
        while moved {
            moved = false
            for id in ids {
                guard let node = nodes[id], node.hasReady else { continue }
                moved = true
                let rd = node.ready()
                let storage = storages[id]!
                storage.append(rd.entries)
                if let hs = rd.hardState { storage.setHardState(hs) }
                for e in rd.committedEntries {
                    if case .confChange(let cc) = e.payload { node.applyConfChange(cc) }
                }
                node.advance(rd)
                for m in rd.allMessages {
                    sent.append(m)
                    if !down.contains(m.to) && !down.contains(m.from) { nodes[m.to]?.step(m) }
                }
            }
        }
    }

    func electOne() {
        nodes[1]!.campaign()
        stabilize()
        #expect(nodes[1]!.role == .leader)
    }
}

@Suite("Consensus: quiescing, dormancy and liveness hooks")
struct QuiescingTests {
    @Test("Consensus: a quiesced leader suspended and resumed is the same leader: no election, proposals commit")
    func leaderSuspendResume() {
        let trio = Trio()
        trio.electOne()
        #expect(trio.nodes[1]!.quiesce())
        trio.stabilize()
        for id in trio.ids { #expect(trio.nodes[id]!.isQuiesced) }
        #expect(trio.nodes[1]!.isQuiescable(ignoring: []))
        let term = trio.nodes[1]!.term
        let suspended = trio.nodes[1]!.suspend()
        #expect(suspended?.isLeader == true)
        #expect(suspended?.caughtUp.sorted() == [2, 3])
        let followerState = trio.nodes[2]!.suspend()
        #expect(followerState?.lead == 1 && followerState?.isLeader == false)
        // Rebuild both from their storages (the host passes the applied index it kept).
        trio.sent = []
        var c1 = trio.config(1)
        c1.applied = suspended!.commit
        var c2 = trio.config(2)
        c2.applied = followerState!.commit
        trio.nodes[1] = RawNode(config: c1, log: trio.storages[1]!, resuming: suspended!)
        trio.nodes[2] = RawNode(config: c2, log: trio.storages[2]!, resuming: followerState!)
        #expect(trio.nodes[1]!.role == .leader && trio.nodes[1]!.term == term && trio.nodes[1]!.isQuiesced)
        #expect(trio.nodes[2]!.leader == 1 && trio.nodes[2]!.isQuiesced)
        #expect(!trio.nodes[1]!.hasReady, "resuming produces no Ready by itself")
        let outcome = trio.nodes[1]!.propose(Array("after".utf8))
        guard case .appended(let index, let t) = outcome else {
            Issue.record("proposal after resume: \(outcome)")
            return
        }
        #expect(t == term)
        trio.stabilize()
        for id in trio.ids { #expect(trio.nodes[id]!.logBounds.commit == index) }
        #expect(!trio.sent.contains { $0.kind == .vote || $0.kind == .preVote })
    }

    @Test("Consensus: a group with lease-based reads never quiesces (its lease needs the leader's ticks)")
    func leaseBasedNeverQuiesces() {
        let trio = Trio { $0.readOnlyOption = .leaseBased }
        trio.electOne()
        #expect(!trio.nodes[1]!.isQuiescable(ignoring: []))
        #expect(!trio.nodes[1]!.quiesce())
        #expect(!trio.nodes[1]!.isQuiesced)
        // The same group with safe reads quiesces.
        let safe = Trio()
        safe.electOne()
        #expect(safe.nodes[1]!.quiesce())
    }

    @Test("Consensus: only a quiesced member can be suspended")
    func suspendNeedsQuiesced() {
        let trio = Trio()
        trio.electOne()
        #expect(trio.nodes[1]!.suspend() == nil)
        #expect(trio.nodes[2]!.suspend() == nil)
    }

    @Test("Consensus: a leader may quiesce without a member on a dead node, not without a quorum")
    func quiesceIgnoringDown() {
        let trio = Trio()
        trio.electOne()
        trio.down = [3]
        _ = trio.nodes[1]!.propose(Array("x".utf8))
        trio.stabilize()
        #expect(!trio.nodes[1]!.isQuiescable(ignoring: []), "member 3 lags")
        #expect(trio.nodes[1]!.isQuiescable(ignoring: [3]))
        #expect(!trio.nodes[1]!.isQuiescable(ignoring: [2, 3]), "no quorum holds the log without 2")
        #expect(trio.nodes[1]!.quiesce(ignoring: [3]))
    }

    @Test(
        "Consensus: a quiesced follower refuses a candidate while its leader is known; forgetting the leader lets it vote"
    )
    func forgetLeaderLetsVote() {
        let trio = Trio()
        trio.electOne()
        #expect(trio.nodes[1]!.quiesce())
        trio.stabilize()
        trio.down = [1]
        // Member 3 campaigns (as the host does for a dead leader's groups).
        trio.nodes[3]!.forgetLeader()
        trio.nodes[3]!.campaign()
        trio.stabilize()
        #expect(trio.nodes[3]!.role != .leader, "member 2 still follows 1 in lease")
        #expect(!trio.nodes[2]!.isQuiesced, "the refused pre-vote woke member 2")
        trio.nodes[2]!.forgetLeader()
        trio.nodes[3]!.campaign()
        trio.stabilize()
        #expect(trio.nodes[3]!.role == .leader)
    }

    @Test("Consensus: periodic heartbeats skip followers that acknowledged an append, when enabled")
    func heartbeatSkip() {
        for enabled in [false, true] {
            let trio = Trio { $0.skipHeartbeatsToAckingFollowers = enabled }
            trio.electOne()
            _ = trio.nodes[1]!.propose(Array("y".utf8))
            trio.stabilize()
            trio.sent = []
            trio.nodes[1]!.tick()
            trio.stabilize()
            let heartbeats = trio.sent.filter { $0.kind == .heartbeat }.count
            #expect(heartbeats == (enabled ? 0 : 2), "enabled=\(enabled)")
            // The next periodic heartbeat goes out: nothing was acknowledged since.
            trio.sent = []
            trio.nodes[1]!.tick()
            trio.stabilize()
            #expect(trio.sent.filter { $0.kind == .heartbeat }.count == 2)
        }
    }

    @Test("Consensus: a leader reports a readable commit only once it committed in its term")
    func readableCommit() {
        let trio = Trio()
        trio.nodes[1]!.campaign()
        // Elected but its empty entry is not committed yet.
        var rounds = 0
        while trio.nodes[1]!.role != .leader && rounds < 10 {
            trio.stabilize()
            rounds += 1
        }
        trio.stabilize()
        #expect(trio.nodes[1]!.leaderCommitForRead == trio.nodes[1]!.logBounds.commit)
        #expect(trio.nodes[2]!.leaderCommitForRead == nil)
    }
}

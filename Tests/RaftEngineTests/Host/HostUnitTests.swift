import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Host: units")
struct HostUnitTests {
    @Test("Host: liveness: silence past the timeout is death; a frame revives; a new boot value is a restart")
    func liveness() {
        // Time in arbitrary units; checks every unit (a gap over half the timeout is a stall).
        var l = NodeLiveness(peerCount: 3, selfSlot: 0, timeoutNanoseconds: 10, now: 0)
        var events: [NodeLiveness.Event] = []
        func run(through end: Int, from start: Int) {
            for t in start...end { events += l.tick(now: t) }
        }
        run(through: 8, from: 1)
        #expect(events.isEmpty)
        l.heard(from: 1, boot: 11, now: 8)
        run(through: 10, from: 9)
        #expect(events == [.down(2)], "node 2 silent for 10; the own slot is never reported")
        events = []
        l.heard(from: 2, boot: 22, now: 11)
        run(through: 11, from: 11)
        #expect(events == [.up(2)])
        events = []
        l.heard(from: 1, boot: 12, now: 12)
        run(through: 12, from: 12)
        #expect(events == [.restarted(1)], "a restarted peer led nothing any more")
        events = []
        run(through: 22, from: 13)
        #expect(events == [.down(2), .down(1)])
        #expect(!l.isAlive(1) && !l.isAlive(2))
        // A late frame of an older boot is no sign of life.
        let stale = l.heard(from: 1, boot: 11, now: 23)
        #expect(!stale)
        events = []
        run(through: 23, from: 23)
        #expect(events.isEmpty && !l.isAlive(1))
        let fresh = l.heard(from: 1, boot: 12, now: 24)
        #expect(fresh)
        run(through: 24, from: 24)
        #expect(events == [.up(1)])
    }

    @Test("Host: liveness: a stall of this node's own checks is not counted as its peers' silence")
    func livenessStall() {
        var l = NodeLiveness(peerCount: 2, selfSlot: 0, timeoutNanoseconds: 100, now: 0)
        for t in stride(from: 10, through: 50, by: 10) { #expect(l.tick(now: t).isEmpty) }
        // This node stopped for 500 (a paused VM, a starved tick thread): no false death.
        #expect(l.tick(now: 550).isEmpty)
        #expect(l.isAlive(1))
        // Real silence after the stall still counts.
        var events: [NodeLiveness.Event] = []
        for t in stride(from: 560, through: 700, by: 10) { events += l.tick(now: t) }
        #expect(events == [.down(1)])
    }

    @Test("Host: liveness: a peer heard during this node's stall gets no head start from the stall credit")
    func livenessStallCreditCapped() {
        var l = NodeLiveness(peerCount: 2, selfSlot: 0, timeoutNanoseconds: 100, now: 0)
        #expect(l.tick(now: 10).isEmpty)
        // Stalled from 10 to 5,010; a frame was read at 5,000 meanwhile.
        l.heard(from: 1, boot: 1, now: 5_000)
        #expect(l.tick(now: 5_010).isEmpty)
        // The peer dies right after: it must be noticed a timeout after 5,000 or so, not
        // 5,000 later.
        var events: [NodeLiveness.Event] = []
        for t in stride(from: 5_020, through: 5_200, by: 10) { events += l.tick(now: t) }
        #expect(events == [.down(1)])
    }

    @Test("Host: entry codec: entries and conf changes round-trip; damaged bytes are refused")
    func codec() throws {
        let cc = ConfChange([.addVoter(4), .addLearner(5), .remove(2)], transition: .jointExplicit)
        let entries = [
            Entry(term: 3, index: 7, payload: .normal(Array("data".utf8))),
            Entry(term: 3, index: 8, payload: .normal([])),
            Entry(term: 4, index: 9, payload: .confChange(cc)),
        ]
        for e in entries { #expect(try EntryCodec.entry(EntryCodec.walEntry(e)) == e) }
        let good = EntryCodec.encode(cc)
        #expect(throws: HostError.self) { try EntryCodec.decodeConfChange(Array(good.dropLast())) }
        var badOp = good
        badOp[3] = 9
        #expect(throws: HostError.self) { try EntryCodec.decodeConfChange(badOp) }
        var badTransition = good
        badTransition[0] = 7
        #expect(throws: HostError.self) { try EntryCodec.decodeConfChange(badTransition) }
        var memberZero = EntryCodec.encode(ConfChange([.addVoter(1)]))
        for i in 4..<12 { memberZero[i] = 0 }
        #expect(throws: HostError.self) { try EntryCodec.decodeConfChange(memberZero) }
        #expect(throws: HostError.self) {
            try EntryCodec.entry(WALEntry(term: 1, index: 1, kind: 9, payload: []))
        }
    }

    @Test("Host: options: inconsistent settings are refused")
    func options() {
        var o = NodeHost.Options()
        #expect(o.validate() == nil)
        o.livenessTimeoutTicks = o.electionTicks - 1
        #expect(o.validate() != nil, "lease reads need liveness >= election timeout")
        o = NodeHost.Options()
        o.workers = 0
        #expect(o.validate() != nil)
        o = NodeHost.Options()
        o.maxPendingRequests = 0
        #expect(o.validate() != nil)
    }

    @Test("Host: options: an election timeout too short for a lease margin is refused")
    func leaseMargin() {
        var o = NodeHost.Options()
        o.heartbeatTicks = 1
        o.livenessTimeoutTicks = 10
        for e in 2..<NodeHost.Options.minimumElectionTicks {
            o.electionTicks = e
            #expect(o.validate()?.contains("electionTicks") == true, "electionTicks \(e): margin E - 1 - E/2 < 1 tick")
        }
        o.electionTicks = NodeHost.Options.minimumElectionTicks
        #expect(o.validate() == nil)
    }

    @Test("Host: read contexts round-trip and tell nodes, shards and starts apart")
    func readContexts() {
        let a = ReadContext(nodeSlot: 1, shard: 0, boot: 7, counter: 1)
        #expect(ReadContext(bytes: a.bytes) == a)
        let others = [
            ReadContext(nodeSlot: 2, shard: 0, boot: 7, counter: 1),
            ReadContext(nodeSlot: 1, shard: 1, boot: 7, counter: 1),
            ReadContext(nodeSlot: 1, shard: 0, boot: 8, counter: 1),
        ]
        for o in others { #expect(o.bytes != a.bytes) }
        #expect(ReadContext(bytes: Array(a.bytes.dropLast())) == nil)
        #expect(ReadContext(bytes: [1, 0, 0, 0, 0, 0, 0, 0]) == nil, "an old 8-byte context is not ours")
    }

    @Test("Host: cluster map: a storage on two nodes is refused")
    func clusterMap() throws {
        let a = NodeID.random()
        let b = NodeID.random()
        let s = try StorageName("shared")
        #expect(throws: HostError.self) { try ClusterMap([a: [s], b: [s]]) }
        let map = try ClusterMap([a: [s]])
        #expect(map.node(serving: s) == a)
        #expect(map.node(serving: try StorageName("other")) == nil)
    }

    @Test("Host: in-memory network: cut links and detached nodes drop frames and fail bulk requests")
    func network() async throws {
        final class Sink: FrameReceiver, @unchecked Sendable {
            var frames = 0
            func receive(_ frame: PeerFrame) { frames += 1 }
            func serve(_ request: BulkRequest, from: NodeID) async -> BulkResponse { .data([1, 2, 3]) }
        }
        let net = InMemoryNetwork()
        let a = NodeID.random()
        let b = NodeID.random()
        let sa = Sink()
        let sb = Sink()
        let ta = net.attach(a, receiver: sa)
        _ = net.attach(b, receiver: sb)
        #expect(ta.send(PeerFrame(from: a, to: b, senderBoot: 1, messages: [])))
        net.setLink(from: a, to: b, up: false)
        #expect(!ta.send(PeerFrame(from: a, to: b, senderBoot: 1, messages: [])))
        net.setLink(from: a, to: b, up: true)
        net.detach(b)
        #expect(!ta.send(PeerFrame(from: a, to: b, senderBoot: 1, messages: [])))
        #expect(sb.frames == 1 && net.counters.frames == 1 && net.counters.dropped == 2)

        let tb = net.attach(b, receiver: sb)
        let id = try AttachmentID(hash: [UInt8](repeating: 1, count: 32), sizes: [3])
        let key = PartitionKey(authority: try StorageName("s"), partitionID: try PartitionID(1))
        let read = BulkRequest.read(partition: key, attachment: id, offset: 0, length: 3)
        #expect(try await ta.request(read, to: b) == .data([1, 2, 3]))
        net.setLink(from: b, to: a, up: false)
        await #expect(throws: BulkError.unreachable(b)) { try await ta.request(read, to: b) }
        net.setLink(from: b, to: a, up: true)
        net.detach(a)
        await #expect(throws: BulkError.unreachable(a)) { try await tb.request(read, to: a) }
        #expect(net.counters.bulkRequests == 2 && net.counters.bulkBytes == 3)
    }
}

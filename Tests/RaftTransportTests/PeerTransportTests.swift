import RaftConsensus
import RaftEngine
import RaftTesting
import Testing

@testable import RaftTransport

@Suite("Transport: peer connections over TCP", .serialized)
struct PeerTransportTests {
    @Test("Transport: three nodes exchange frames both ways on one connection per pair")
    func framesFlow() async throws {
        let mesh = try Mesh(3)
        defer { mesh.stop() }
        try await mesh.waitConnected()
        for a in 0..<3 {
            for b in 0..<3 where a != b { try await mesh.exchange(a, b) }
        }
        // What arrived is what was sent, from the node it claims.
        for b in 0..<3 {
            for frame in mesh.receivers[b].received {
                #expect(frame.to == mesh.nodes[b] && frame.messages.count == 1)
            }
        }
        for i in 0..<3 {
            let stats = mesh.transport(i).statistics
            #expect(stats.connectionsEstablished >= 4, "frames and bulk to two peers")
            #expect(stats.refusals.isEmpty, "\(stats.refusals)")
        }
    }

    @Test("Transport: bulk reads and stores are answered on their own connection; an absent peer is unreachable")
    func bulkRequests() async throws {
        let mesh = try Mesh(2)
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let key = PartitionKey(authority: try StorageName("s0"), partitionID: try PartitionID(1))
        let attachment = try AttachmentID(hash: Array(repeating: 1, count: 32), sizes: [10 << 20])
        // Large reads, many at once, in both directions.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<9 {
                group.addTask {
                    let from = n % 2
                    let offset = UInt64(n) << 18
                    // Eight small reads and one of the largest size a node serves.
                    let length = n == 8 ? BulkRequest.maximumReadBytes : 1 << 18
                    let response = try await mesh.transport(from).request(
                        .read(partition: key, attachment: attachment, offset: offset, length: length),
                        to: mesh.nodes[1 - from])
                    #expect(response == .data((0..<length).map { UInt8(truncatingIfNeeded: Int(offset) + $0) }))
                }
            }
            try await group.waitForAll()
        }
        #expect(
            try await mesh.transport(0).request(.store(partition: key, attachment: attachment), to: mesh.nodes[1])
                == .stored)
        await #expect(throws: BulkError.self) {
            _ = try await mesh.transport(0).request(.store(partition: key, attachment: attachment), to: NodeID.random())
        }
        // A peer that goes away fails what is in flight to it.
        mesh.receivers[1].holdServing.store(true, ordering: .relaxed)
        let pending = Task {
            try await mesh.transport(0).request(.store(partition: key, attachment: attachment), to: mesh.nodes[1])
        }
        try await Task.sleep(for: .milliseconds(100))
        mesh.network.detach(mesh.nodes[1])
        await #expect(throws: BulkError.self) { _ = try await pending.value }
        mesh.receivers[1].holdServing.store(false, ordering: .relaxed)
    }

    @Test("Transport: requests beyond the in-flight bound are answered busy; served ones beyond theirs are refused")
    func bulkBounds() async throws {
        // Node 0 (the smallest ID) serves one request at a time; node 1 serves eight.
        let mesh = try Mesh(2) { configuration in
            configuration.bulkRequestsInFlight = 2
            configuration.bulkRequestsServed = configuration.peers.keys.allSatisfy { configuration.nodeID < $0 } ? 1 : 8
        }
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let key = PartitionKey(authority: try StorageName("s0"), partitionID: try PartitionID(1))
        let attachment = try AttachmentID(hash: Array(repeating: 1, count: 32), sizes: [100])
        let store = BulkRequest.store(partition: key, attachment: attachment)
        // Node 0 to node 1: two held in service, the third over node 0's in-flight bound.
        mesh.receivers[1].holdServing.store(true, ordering: .relaxed)
        let held = (0..<2).map { _ in Task { try await mesh.transport(0).request(store, to: mesh.nodes[1]) } }
        try await until("both requests are in service", within: 10) {
            mesh.transport(1).statistics.bulkRequestsServed == 2
        }
        await #expect(throws: BulkError.busy(mesh.nodes[1])) {
            _ = try await mesh.transport(0).request(store, to: mesh.nodes[1])
        }
        mesh.receivers[1].holdServing.store(false, ordering: .relaxed)
        for task in held { #expect(try await task.value == .stored) }
        // Node 1 to node 0: one in service, the other refused by node 0's serving bound.
        mesh.receivers[0].holdServing.store(true, ordering: .relaxed)
        let first = Task { try await mesh.transport(1).request(store, to: mesh.nodes[0]) }
        try await until("the first request is in service", within: 10) {
            mesh.transport(0).statistics.bulkRequestsServed == 1
        }
        let second = try await mesh.transport(1).request(store, to: mesh.nodes[0])
        #expect(second == .refused("busy: 1 bulk requests in service for this node"))
        mesh.receivers[0].holdServing.store(false, ordering: .relaxed)
        #expect(try await first.value == .stored)
        #expect(mesh.transport(0).statistics.bulkRequestsRefused == 1)
    }

    @Test("Transport: a restarted peer on a new port is dialled again and frames flow")
    func reconnect() async throws {
        let mesh = try Mesh(3)
        defer { mesh.stop() }
        try await mesh.waitConnected()
        for victim in [0, 2] {
            mesh.network.detach(mesh.nodes[victim])
            _ = try mesh.network.attach(mesh.nodes[victim], receiver: mesh.receivers[victim])
            try await mesh.waitConnected()
            for other in 0..<3 where other != victim {
                try await mesh.exchange(victim, other)
                try await mesh.exchange(other, victim)
            }
        }
    }

    @Test("Transport: a wrong cluster, wrong secret, unknown node or wrong target is refused; the node keeps serving")
    func handshakeRefusals() async throws {
        let mesh = try Mesh(2)
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let target = mesh.transport(1)
        let port = target.listeningPort
        let secret = mesh.network.secret
        let cases: [(ManualDialer, RefusalCause)] = [
            (
                ManualDialer(cluster: ClusterID.random(), from: mesh.nodes[0], to: mesh.nodes[1], secret: secret),
                .wrongCluster
            ),
            (
                ManualDialer(
                    cluster: mesh.network.clusterID, from: mesh.nodes[0], to: mesh.nodes[1],
                    secret: Array("another secret of the cluster".utf8)), .wrongSecret
            ),
            (
                ManualDialer(cluster: mesh.network.clusterID, from: NodeID.random(), to: mesh.nodes[1], secret: secret),
                .unknownNode
            ),
            (
                ManualDialer(cluster: mesh.network.clusterID, from: mesh.nodes[0], to: NodeID.random(), secret: secret),
                .wrongNode
            ),
        ]
        for (dialer, cause) in cases {
            let socket = try RawSocket(port: port)
            let answer = dialer.run(socket)
            #expect(answer?.type == PeerMessageType.refused.rawValue, "\(cause)")
            #expect(answer.map { String(decoding: $0.body, as: UTF8.self) } == cause.rawValue)
            #expect(socket.closedByPeer(), "\(cause)")
            #expect(target.statistics.refusals[cause.rawValue] == 1, "\(cause): \(target.statistics.refusals)")
            try await mesh.exchange(0, 1)
            try await mesh.exchange(1, 0)
        }
        // A rogue transport with the wrong secret never connects and refuses the real node too.
        #expect(target.connectedPeers == [mesh.nodes[0]])
    }

    @Test("Transport: a replayed hello or proof is refused")
    func replay() async throws {
        let mesh = try Mesh(2)
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let target = mesh.transport(1)
        let secret = mesh.network.secret
        let dialer = ManualDialer(
            cluster: mesh.network.clusterID, from: mesh.nodes[0], to: mesh.nodes[1], secret: secret)
        // A genuine handshake (it replaces node 0's frame connection: the newest wins).
        let first = try RawSocket(port: target.listeningPort)
        let accepted = dialer.run(first)
        #expect(accepted?.type == PeerMessageType.accepted.rawValue)
        // The same hello again: refused as a replay.
        let second = try RawSocket(port: target.listeningPort)
        #expect(dialer.run(second)?.type == PeerMessageType.refused.rawValue)
        #expect(target.statistics.refusals[RefusalCause.replayedChallenge.rawValue] == 1)
        // A fresh hello with a proof recorded from another handshake: its MAC covers the old
        // nonces, so it fails.
        let third = try RawSocket(port: target.listeningPort)
        let fresh = ManualDialer(
            cluster: mesh.network.clusterID, from: mesh.nodes[0], to: mesh.nodes[1], secret: secret)
        third.sendMessage(PeerMessageType.hello.rawValue, fresh.hello.encoded)
        _ = third.receiveMessage()
        third.sendMessage(PeerMessageType.proof.rawValue, Array(repeating: 0x5A, count: 32))
        #expect(third.receiveMessage()?.type == PeerMessageType.refused.rawValue)
        #expect(target.statistics.refusals[RefusalCause.wrongSecret.rawValue] == 1)
        try await mesh.waitConnected()
        try await mesh.exchange(0, 1)
    }

    @Test("Transport: garbage, truncated, oversized and impersonating messages close that connection only")
    func hostileBytes() async throws {
        let mesh = try Mesh(2) { $0.maximumMessageBytes = 8 << 20 }
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let target = mesh.transport(1)
        let port = target.listeningPort
        // Garbage before any handshake.
        do {
            let socket = try RawSocket(port: port)
            socket.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            #expect(socket.closedByPeer())
            // "GET " read as a length is far over the bound.
            #expect(target.statistics.refusals[RefusalCause.oversizedMessage.rawValue] == 1)
        }
        // An announced length over the bound.
        do {
            let socket = try RawSocket(port: port)
            socket.send([0x00, 0x80, 0x00, 0x01, 1])
            #expect(socket.closedByPeer())
            #expect(target.statistics.refusals[RefusalCause.oversizedMessage.rawValue] == 2)
        }
        // A message cut short by the end of the stream.
        do {
            let socket = try RawSocket(port: port)
            socket.send([0, 0, 0, 100, 1, 2, 3])
            socket.finishWriting()
            #expect(socket.closedByPeer())
        }
        try await until("the truncated message is counted", within: 5) {
            target.statistics.refusals[RefusalCause.truncatedMessage.rawValue] == 1
        }
        // After a genuine handshake: a malformed frame, then a frame claiming another sender.
        let secret = mesh.network.secret
        for damage in ["malformed", "impersonation", "wrong type", "tampered", "unsealed"] {
            let socket = try RawSocket(port: port)
            let dialer = ManualDialer(
                cluster: mesh.network.clusterID, from: mesh.nodes[0], to: mesh.nodes[1], secret: secret)
            #expect(dialer.run(socket)?.type == PeerMessageType.accepted.rawValue)
            switch damage {
            case "malformed":
                dialer.sendSealed(socket, .frame, [1, 2, 3, 4, 5])
            case "impersonation":
                let frame = PeerFrame(from: NodeID.random(), to: mesh.nodes[1], senderBoot: 1, messages: [])
                dialer.sendSealed(socket, .frame, PeerWire.encode(frame))
            case "tampered":
                let frame = PeerFrame(from: mesh.nodes[0], to: mesh.nodes[1], senderBoot: 1, messages: [])
                dialer.sendSealed(socket, .frame, PeerWire.encode(frame), tamper: true)
            case "unsealed":
                let frame = PeerFrame(from: mesh.nodes[0], to: mesh.nodes[1], senderBoot: 1, messages: [])
                socket.sendMessage(PeerMessageType.frame.rawValue, PeerWire.encode(frame))
            default:
                dialer.sendSealed(socket, .bulkRequest, Array(repeating: 0, count: 20))
            }
            #expect(socket.closedByPeer(), "\(damage)")
        }
        #expect(target.statistics.refusals[RefusalCause.malformedMessage.rawValue] == 2)
        #expect(target.statistics.refusals[RefusalCause.impersonation.rawValue] == 1)
        #expect(target.statistics.refusals[RefusalCause.badIntegrityTag.rawValue] == 2)
        try await mesh.waitConnected()
        try await mesh.exchange(0, 1)
        try await mesh.exchange(1, 0)
    }

    @Test("Transport: a frame over the send queue's byte bound is dropped, not buffered")
    func sendQueueBound() async throws {
        let mesh = try Mesh(2) { configuration in
            configuration.maximumMessageBytes = 8 << 20
            configuration.sendQueueBytes = 8 << 20
        }
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let key = PartitionKey(authority: try StorageName("s0"), partitionID: try PartitionID(1))
        let big = Message(
            kind: .append, from: MemberID(1), to: MemberID(2),
            entries: [Entry(term: Term(1), index: LogIndex(1), payload: .normal(Array(repeating: 7, count: 3 << 20)))])
        let frame = PeerFrame(
            from: mesh.nodes[0], to: mesh.nodes[1], senderBoot: 1, messages: [PeerMessage(partition: key, message: big)]
        )
        // Sent back to back, faster than loopback drains them: some are refused.
        var accepted = 0
        for _ in 0..<40 where mesh.transport(0).send(frame) { accepted += 1 }
        #expect(accepted >= 1 && accepted < 40)
        #expect(mesh.transport(0).statistics.framesDropped == UInt64(40 - accepted))
        // A message over the message bound by itself is never sent (a frame of several
        // would be split; whether its parts fit the queue depends on how fast it drained,
        // which made an earlier version of this check fail once under load).
        let oversized = Message(
            kind: .append, from: MemberID(1), to: MemberID(2),
            entries: [Entry(term: Term(1), index: LogIndex(2), payload: .normal(Array(repeating: 7, count: 9 << 20)))])
        let huge = PeerFrame(
            from: mesh.nodes[0], to: mesh.nodes[1], senderBoot: 1,
            messages: [PeerMessage(partition: key, message: oversized)])
        #expect(!mesh.transport(0).send(huge))
        try await until("the accepted frames arrive", within: 10) { mesh.receivers[1].received.count >= accepted }
    }
}

@Suite("Transport: bounds on strangers and silent peers", .serialized)
struct PeerTransportBoundsTests {
    @Test(
        "Transport: connections beyond the pending-handshake bound are closed; a message before the handshake is small")
    func pendingHandshakes() async throws {
        let mesh = try Mesh(2) { configuration in
            configuration.maximumPendingHandshakes = 8
            configuration.handshakeTimeoutMilliseconds = 60_000
        }
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let target = mesh.transport(1)
        // Before its handshake, a connection may not announce more than a hello's size.
        let big = try RawSocket(port: target.listeningPort)
        big.send([0, 0, 2, 0, 1])
        #expect(big.closedByPeer())
        #expect(target.statistics.refusals[RefusalCause.oversizedMessage.rawValue] == 1)
        _ = try await mesh.flood(1, strangers: 12, refusedFor: .tooManyHandshakes, atLeast: 4, within: 20)
    }

    @Test("Transport: a source opening connections faster than the accept rate is closed before a byte is read")
    func acceptRate() async throws {
        let mesh = try Mesh(2) { configuration in
            configuration.acceptBurst = 6
            configuration.acceptsPerSecond = 1
        }
        defer { mesh.stop() }
        try await mesh.waitConnected()
        // The mesh's own two connections used two tokens; a burst of strangers uses the rest.
        let sockets = try await mesh.flood(1, strangers: 12, refusedFor: .connectionRate, atLeast: 6, within: 10)
        #expect(sockets.suffix(4).allSatisfy { $0.closedByPeer() })
    }

    @Test("Transport: an idle connection stays up on pings; a bulk request past its deadline is unreachable")
    func idleAndDeadlines() async throws {
        let mesh = try Mesh(2) { configuration in
            configuration.idleTimeoutMilliseconds = 300
            configuration.bulkStoreTimeoutMilliseconds = 300
        }
        defer { mesh.stop() }
        try await mesh.waitConnected()
        let established = mesh.transport(0).statistics.connectionsEstablished
        try await Task.sleep(for: .milliseconds(1_500))
        #expect(mesh.transport(0).statistics.connectionsEstablished == established, "pings keep idle connections")
        let key = PartitionKey(authority: try StorageName("s0"), partitionID: try PartitionID(1))
        let attachment = try AttachmentID(hash: Array(repeating: 1, count: 32), sizes: [100])
        mesh.receivers[1].holdServing.store(true, ordering: .relaxed)
        let started = ContinuousClock.now
        await #expect(throws: BulkError.unreachable(mesh.nodes[1])) {
            _ = try await mesh.transport(0).request(.store(partition: key, attachment: attachment), to: mesh.nodes[1])
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        // A cancelled request ends at once too.
        let task = Task {
            try await mesh.transport(0).request(.store(partition: key, attachment: attachment), to: mesh.nodes[1])
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: BulkError.self) { _ = try await task.value }
        mesh.receivers[1].holdServing.store(false, ordering: .relaxed)
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}

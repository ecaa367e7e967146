import RaftConsensus
import RaftEngine
import Testing

@Suite("Transport: the peer wire format")
struct PeerWireTests {
    static func sampleFrame() throws -> PeerFrame {
        let a = PartitionKey(authority: try StorageName("s0"), partitionID: try PartitionID(7))
        let b = PartitionKey(authority: try StorageName("s1"), partitionID: try PartitionID(1 << 40))
        let change = ConfChange([.addLearner(MemberID(4)), .remove(MemberID(2))], transition: .jointExplicit)
        var append = Message(
            kind: .append, from: MemberID(1), to: MemberID(2), term: Term(5), logTerm: Term(4), index: LogIndex(10),
            entries: [
                Entry(term: Term(5), index: LogIndex(11), payload: .normal(Array("hello".utf8))),
                Entry(term: Term(5), index: LogIndex(12), payload: .confChange(change)),
                Entry(term: Term(5), index: LogIndex(13), payload: .normal([])),
            ], commit: LogIndex(9))
        append.context = [1, 2, 3]
        let response = Message(
            kind: .appendResponse, from: MemberID(2), to: MemberID(1), term: Term(5), index: LogIndex(8), reject: true,
            rejectHint: LogIndex(6))
        let heartbeat = Message(
            kind: .heartbeat, from: MemberID(1), to: MemberID(3), commit: LogIndex(9), quiesce: true)
        let snapshot = Message(
            kind: .snapshot, from: MemberID(1), to: MemberID(3), term: Term(5),
            snapshot: Snapshot(
                metadata: SnapshotMetadata(
                    index: LogIndex(100), term: Term(4),
                    confState: ConfState(voters: [MemberID(1), MemberID(2)], learners: [MemberID(3)])),
                data: [9, 9, 9]))
        return PeerFrame(
            from: NodeID.random(), to: NodeID.random(), senderBoot: 42,
            messages: [
                PeerMessage(partition: a, message: append), PeerMessage(partition: a, message: response),
                PeerMessage(partition: b, message: heartbeat), PeerMessage(partition: b, message: snapshot),
            ])
    }

    @Test("Transport: a frame with every kind of field survives encoding")
    func frameRoundTrip() throws {
        let frame = try Self.sampleFrame()
        let decoded = try PeerWire.decodeFrame(PeerWire.encode(frame))
        #expect(decoded.from == frame.from && decoded.to == frame.to && decoded.senderBoot == 42)
        #expect(decoded.messages.map(\.partition) == frame.messages.map(\.partition))
        #expect(decoded.messages.map(\.message) == frame.messages.map(\.message))
        let empty = PeerFrame(from: frame.from, to: frame.to, senderBoot: 1, messages: [])
        #expect(try PeerWire.decodeFrame(PeerWire.encode(empty)).messages.isEmpty)
    }

    @Test("Transport: every truncation and every single-byte change of a frame is refused or decodes, never traps")
    func damagedFrames() throws {
        let bytes = PeerWire.encode(try Self.sampleFrame())
        for length in 0..<bytes.count {
            #expect(throws: PeerWireError.self) { try PeerWire.decodeFrame(Array(bytes[..<length])) }
        }
        #expect(throws: PeerWireError.self) { try PeerWire.decodeFrame(bytes + [0]) }
        var rng = SplitMix64(seed: 7)
        for offset in bytes.indices {
            var damaged = bytes
            damaged[offset] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            _ = try? PeerWire.decodeFrame(damaged)
        }
        // A count that the bytes cannot hold is refused before anything is reserved.
        var huge = Array(bytes[..<41])
        huge += [0xFF, 0xFF, 0xFF, 0xFF]
        #expect(throws: PeerWireError.self) { try PeerWire.decodeFrame(huge) }
    }

    @Test("Transport: bulk requests and answers survive encoding; bad ones are refused")
    func bulkRoundTrip() throws {
        let key = PartitionKey(authority: try StorageName("s0"), partitionID: try PartitionID(3))
        let attachment = try AttachmentID(hash: Array(repeating: 0xAB, count: 32), sizes: [1000, 24])
        let requests: [BulkRequest] = [
            .read(partition: key, attachment: attachment, offset: 17, length: 4096),
            .store(partition: key, attachment: attachment),
            .transferLeadership(partition: key, to: MemberID(2)),
        ]
        for request in requests {
            #expect(try PeerWire.decodeBulkRequest(PeerWire.encode(request)) == request)
            let bytes = PeerWire.encode(request)
            for length in 0..<bytes.count {
                #expect(throws: PeerWireError.self) { try PeerWire.decodeBulkRequest(Array(bytes[..<length])) }
            }
        }
        let tooLong = BulkRequest.read(
            partition: key, attachment: attachment, offset: 0, length: BulkRequest.maximumReadBytes + 1)
        #expect(throws: PeerWireError.self) { try PeerWire.decodeBulkRequest(PeerWire.encode(tooLong)) }
        for response in [BulkResponse.data([1, 2, 3]), .stored, .refused("no such attachment")] {
            #expect(try PeerWire.decodeBulkResponse(PeerWire.encode(response)) == response)
        }
        #expect(throws: PeerWireError.self) { try PeerWire.decodeBulkResponse([1, 9]) }
    }
}

import RaftConsensus

/// Why bytes from a peer do not decode. The network transport closes the connection that
/// carried them and logs the reason; nothing of the message reaches the host.
public struct PeerWireError: Error, Equatable, Sendable, CustomStringConvertible {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The byte form of what nodes exchange: consensus frames (every group's messages for one
/// destination, batched) and bulk requests and answers. Big-endian, versioned, every length
/// checked against what is left and against a bound, so that damaged or hostile bytes
/// become a `PeerWireError`, never a trap or an unbounded allocation. The transport adds
/// its own length prefix and message type around these bodies.
public enum PeerWire {
    public static let version: UInt8 = 1

    /// Bounds a decoder enforces beyond "fits the bytes": a frame over them is damage.
    public static let maximumMessagesPerFrame = 1 << 20
    public static let maximumEntriesPerMessage = 1 << 20
    public static let maximumContextBytes = 1 << 16

    // MARK: frames

    public static func encode(_ frame: PeerFrame) -> [UInt8] {
        var writer = ByteWriter(version: version)
        writer.append(frame.from.bytes)
        writer.append(frame.to.bytes)
        writer.u64(frame.senderBoot)
        writer.u32(UInt32(frame.messages.count))
        var keyCache: (PartitionKey, [UInt8])?
        for peerMessage in frame.messages {
            // Consecutive messages of one group share the key's bytes.
            let key: [UInt8]
            if let cached = keyCache, cached.0 == peerMessage.partition {
                key = cached.1
            } else {
                key = peerMessage.partition.encoded
                keyCache = (peerMessage.partition, key)
            }
            writer.u8(UInt8(key.count))
            writer.append(key)
            encode(peerMessage.message, into: &writer)
        }
        return writer.bytes
    }

    public static func decodeFrame(_ bytes: [UInt8]) throws(PeerWireError) -> PeerFrame {
        var reader = ByteReader(bytes)
        do throws(DecodeFailure) {
            try reader.expectVersion(version)
            let from = try nodeID(&reader)
            let to = try nodeID(&reader)
            let boot = try reader.u64()
            let count = Int(try reader.u32())
            // Every message takes at least its fixed fields: a count beyond what the bytes
            // can hold is damage, refused before anything is reserved.
            guard count <= maximumMessagesPerFrame, count <= reader.remaining / minimumMessageBytes else {
                throw DecodeFailure("frame claims \(count) messages in \(reader.remaining) bytes")
            }
            var messages: [PeerMessage] = []
            messages.reserveCapacity(count)
            var lastKey: ([UInt8], PartitionKey)?
            for _ in 0..<count {
                let raw = try reader.take(Int(try reader.u8()))
                let partition: PartitionKey
                if let last = lastKey, last.0 == raw {
                    partition = last.1
                } else {
                    partition = try DecodeFailure.validating { () throws(IdentityError) in
                        try PartitionKey(decoding: raw)
                    }
                    lastKey = (raw, partition)
                }
                messages.append(PeerMessage(partition: partition, message: try message(&reader)))
            }
            try reader.expectEnd()
            return PeerFrame(from: from, to: to, senderBoot: boot, messages: messages)
        } catch {
            throw PeerWireError("frame: \(error.reason)")
        }
    }

    /// kind, from, to, term, logTerm, index, commit, rejectHint, flags, context length,
    /// entry count: a message's fixed part.
    static let minimumMessageBytes = 1 + 1 + 8 * 7 + 1 + 4 + 4

    private static func encode(_ message: Message, into writer: inout ByteWriter) {
        writer.u8(message.kind.rawValue)
        writer.u64(message.from.rawValue)
        writer.u64(message.to.rawValue)
        writer.u64(message.term.rawValue)
        writer.u64(message.logTerm.rawValue)
        writer.u64(message.index.rawValue)
        writer.u64(message.commit.rawValue)
        writer.u64(message.rejectHint.rawValue)
        var flags: UInt8 = 0
        if message.reject { flags |= 1 }
        if message.quiesce { flags |= 2 }
        if message.snapshot != nil { flags |= 4 }
        writer.u8(flags)
        writer.u32(UInt32(message.context.count))
        writer.append(message.context)
        writer.u32(UInt32(message.entries.count))
        for entry in message.entries {
            writer.u64(entry.term.rawValue)
            writer.u64(entry.index.rawValue)
            switch entry.payload {
            case .normal(let bytes):
                writer.u8(EntryCodec.normalKind)
                writer.u32(UInt32(bytes.count))
                writer.append(bytes)
            case .confChange(let change):
                let bytes = EntryCodec.encode(change)
                writer.u8(EntryCodec.confChangeKind)
                writer.u32(UInt32(bytes.count))
                writer.append(bytes)
            }
        }
        if let snapshot = message.snapshot {
            writer.u64(snapshot.metadata.index.rawValue)
            writer.u64(snapshot.metadata.term.rawValue)
            // The core keeps configurations valid; an invalid one encodes as empty and is
            // refused by the receiver.
            let conf = (try? StoredConfState(snapshot.metadata.confState))?.encoded ?? []
            writer.u32(UInt32(conf.count))
            writer.append(conf)
            writer.u32(UInt32(snapshot.data.count))
            writer.append(snapshot.data)
        }
    }

    private static func message(_ reader: inout ByteReader) throws(DecodeFailure) -> Message {
        let rawKind = try reader.u8()
        guard let kind = MessageKind(rawValue: rawKind) else { throw DecodeFailure("unknown message kind \(rawKind)") }
        let from = MemberID(try reader.u64())
        let to = MemberID(try reader.u64())
        guard from != .none, to != .none else { throw DecodeFailure("a \(kind) message names member 0") }
        var message = Message(kind: kind, from: from, to: to)
        message.term = Term(try reader.u64())
        message.logTerm = Term(try reader.u64())
        message.index = LogIndex(try reader.u64())
        message.commit = LogIndex(try reader.u64())
        message.rejectHint = LogIndex(try reader.u64())
        let flags = try reader.u8()
        guard flags & ~7 == 0 else { throw DecodeFailure("unknown message flags \(flags)") }
        message.reject = flags & 1 != 0
        message.quiesce = flags & 2 != 0
        let contextBytes = Int(try reader.u32())
        guard contextBytes <= maximumContextBytes else { throw DecodeFailure("context of \(contextBytes) bytes") }
        message.context = try reader.take(contextBytes)
        let entryCount = Int(try reader.u32())
        // term, index, kind, length: 21 bytes at least per entry.
        guard entryCount <= maximumEntriesPerMessage, entryCount <= reader.remaining / 21 else {
            throw DecodeFailure("message claims \(entryCount) entries in \(reader.remaining) bytes")
        }
        message.entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            let term = Term(try reader.u64())
            let index = LogIndex(try reader.u64())
            let entryKind = try reader.u8()
            let payload = try reader.take(Int(try reader.u32()))
            switch entryKind {
            case EntryCodec.normalKind:
                message.entries.append(Entry(term: term, index: index, payload: .normal(payload)))
            case EntryCodec.confChangeKind:
                let change: ConfChange
                do {
                    change = try EntryCodec.decodeConfChange(payload)
                } catch {
                    throw DecodeFailure("entry \(index): \(error)")
                }
                message.entries.append(Entry(term: term, index: index, payload: .confChange(change)))
            default:
                throw DecodeFailure("entry \(index) has unknown kind \(entryKind)")
            }
        }
        if flags & 4 != 0 {
            let index = LogIndex(try reader.u64())
            let term = Term(try reader.u64())
            let conf = try StoredConfState(decoding: try reader.take(Int(try reader.u32())))
            let data = try reader.take(Int(try reader.u32()))
            message.snapshot = Snapshot(
                metadata: SnapshotMetadata(index: index, term: term, confState: ConfState(conf)), data: data)
        }
        return message
    }

    private static func nodeID(_ reader: inout ByteReader) throws(DecodeFailure) -> NodeID {
        let bytes = try reader.take(16)
        return try DecodeFailure.validating { () throws(IdentityError) in try NodeID(bytes: bytes) }
    }

    // MARK: bulk

    public static func encode(_ request: BulkRequest) -> [UInt8] {
        var writer = ByteWriter(version: version)
        // A lookup by path only has no partition: an empty key.
        let key = request.partition?.encoded ?? []
        writer.u8(UInt8(key.count))
        writer.append(key)
        switch request {
        case .read(_, let attachment, let offset, let length):
            writer.u8(1)
            encode(attachment, into: &writer)
            writer.u64(offset)
            writer.u32(UInt32(length))
        case .store(_, let attachment):
            writer.u8(2)
            encode(attachment, into: &writer)
        case .createReplica(let spec):
            writer.u8(3)
            writer.u64(spec.member.rawValue)
            writer.storageName(spec.storage)
            writer.u8(spec.mode.rawValue)
            writer.u8(UInt8(spec.replicas.count))
            for replica in spec.replicas {
                writer.u64(replica.member.rawValue)
                writer.storageName(replica.storage)
                writer.u8(replica.role.rawValue)
                writer.u64(replica.incarnation?.rawValue ?? 0)
            }
            // Since membership changes: the entry's version and the start configuration.
            writer.u64(spec.routeVersion.term.rawValue)
            writer.u64(spec.routeVersion.index.rawValue)
            writer.u8(spec.startConf == nil ? 0 : 1)
            if let conf = spec.startConf {
                let bytes = (try? StoredConfState(conf))?.encoded ?? []
                writer.u32(UInt32(bytes.count))
                writer.append(bytes)
            }
        case .transferLeadership(_, let member):
            writer.u8(4)
            writer.u64(member.rawValue)
        case .storageIncarnation(let storage):
            writer.u8(7)
            writer.storageName(storage)
        case .routes(let keys, let paths):
            writer.u8(6)
            writer.u16(UInt16(max(0, keys.count - 1)))
            for key in keys.dropFirst() {
                let bytes = key.encoded
                writer.u8(UInt8(bytes.count))
                writer.append(bytes)
            }
            writer.u16(UInt16(paths.count))
            for path in paths {
                let bytes = Array(path.rawValue.utf8)
                writer.u16(UInt16(bytes.count))
                writer.append(bytes)
            }
        case .snapshotChunk(let chunk):
            writer.u8(5)
            writer.u64(chunk.transfer)
            writer.u32(chunk.sequence)
            writer.u8((chunk.isLast ? 1 : 0) | (chunk.message != nil ? 2 : 0))
            if let message = chunk.message { encode(message, into: &writer) }
            writer.u32(UInt32(chunk.bytes.count))
            writer.append(chunk.bytes)
        }
        return writer.bytes
    }

    public static func decodeBulkRequest(_ bytes: [UInt8]) throws(PeerWireError) -> BulkRequest {
        var reader = ByteReader(bytes)
        do throws(DecodeFailure) {
            try reader.expectVersion(version)
            let raw = try reader.take(Int(try reader.u8()))
            let partition: PartitionKey? =
                raw.isEmpty
                ? nil : try DecodeFailure.validating { () throws(IdentityError) in try PartitionKey(decoding: raw) }
            let kind = try reader.u8()
            if kind == 6 { return try routesRequest(first: partition, &reader) }
            if kind == 7 {
                guard partition == nil else { throw DecodeFailure("an incarnation request about a partition") }
                let storage = try reader.storageName()
                try reader.expectEnd()
                return .storageIncarnation(storage)
            }
            guard let partition else { throw DecodeFailure("a bulk request of kind \(kind) without a partition") }
            let request: BulkRequest
            switch kind {
            case 1:
                let attachment = try attachmentID(&reader)
                let offset = try reader.u64()
                let length = Int(try reader.u32())
                guard length <= BulkRequest.maximumReadBytes else {
                    throw DecodeFailure("a read of \(length) bytes is over \(BulkRequest.maximumReadBytes)")
                }
                request = .read(partition: partition, attachment: attachment, offset: offset, length: length)
            case 2:
                request = .store(partition: partition, attachment: try attachmentID(&reader))
            case 3:
                let member = MemberID(try reader.u64())
                let storage = try reader.storageName()
                let rawMode = try reader.u8()
                guard let mode = ReplicationMode(rawValue: rawMode) else {
                    throw DecodeFailure("unknown replication mode \(rawMode)")
                }
                let count = Int(try reader.u8())
                guard count <= StoredConfState.maximumMembers else { throw DecodeFailure("\(count) replicas") }
                var replicas: [RouteReplica] = []
                for _ in 0..<count {
                    let replicaMember = MemberID(try reader.u64())
                    let replicaStorage = try reader.storageName()
                    let rawRole = try reader.u8()
                    guard let role = ReplicaRole(rawValue: rawRole) else {
                        throw DecodeFailure("unknown replica role \(rawRole)")
                    }
                    guard replicaMember != .none else { throw DecodeFailure("a replica with member 0") }
                    let incarnation = try reader.optionalIncarnation()
                    replicas.append(
                        RouteReplica(
                            member: replicaMember, storage: replicaStorage, role: role, incarnation: incarnation))
                }
                guard member != .none else { throw DecodeFailure("a replica with member 0") }
                var spec = ReplicaSpec(
                    partition: partition, member: member, storage: storage, replicas: replicas, mode: mode)
                spec.routeVersion = RouteVersion(term: Term(try reader.u64()), index: LogIndex(try reader.u64()))
                switch try reader.u8() {
                case 0: break
                case 1:
                    let length = Int(try reader.u32())
                    guard length <= 4096 else { throw DecodeFailure("a start configuration of \(length) bytes") }
                    spec.startConf = ConfState(try StoredConfState(decoding: try reader.take(length)))
                case let flag: throw DecodeFailure("unknown start configuration flag \(flag)")
                }
                request = .createReplica(spec)
            case 4:
                let member = MemberID(try reader.u64())
                guard member != .none else { throw DecodeFailure("a transfer to member 0") }
                request = .transferLeadership(partition: partition, to: member)
            case 5:
                let transfer = try reader.u64()
                let sequence = try reader.u32()
                let flags = try reader.u8()
                guard flags & ~3 == 0 else { throw DecodeFailure("unknown snapshot chunk flags \(flags)") }
                let message = flags & 2 != 0 ? try message(&reader) : nil
                if let message, message.kind != .snapshot || message.snapshot == nil {
                    throw DecodeFailure("a snapshot chunk carries a \(message.kind) message")
                }
                let count = Int(try reader.u32())
                guard count <= SnapshotChunk.maximumBytes else { throw DecodeFailure("a chunk of \(count) bytes") }
                request = .snapshotChunk(
                    SnapshotChunk(
                        partition: partition, transfer: transfer, sequence: sequence, message: message,
                        bytes: try reader.take(count), isLast: flags & 1 != 0))
            default:
                throw DecodeFailure("unknown bulk request kind \(kind)")
            }
            try reader.expectEnd()
            return request
        } catch {
            throw PeerWireError("bulk request: \(error.reason)")
        }
    }

    public static func encode(_ response: BulkResponse) -> [UInt8] {
        var writer = ByteWriter(version: version)
        switch response {
        case .data(let bytes):
            writer.u8(1)
            writer.u32(UInt32(bytes.count))
            writer.append(bytes)
        case .stored:
            writer.u8(2)
        case .refused(let reason):
            let text = Array(reason.utf8.prefix(4096))
            writer.u8(3)
            writer.u32(UInt32(text.count))
            writer.append(text)
        }
        return writer.bytes
    }

    public static func decodeBulkResponse(_ bytes: [UInt8]) throws(PeerWireError) -> BulkResponse {
        var reader = ByteReader(bytes)
        do throws(DecodeFailure) {
            try reader.expectVersion(version)
            let kind = try reader.u8()
            let response: BulkResponse
            switch kind {
            case 1:
                let count = Int(try reader.u32())
                guard count <= BulkRequest.maximumReadBytes else { throw DecodeFailure("\(count) bytes of data") }
                response = .data(try reader.take(count))
            case 2:
                response = .stored
            case 3:
                let count = Int(try reader.u32())
                guard count <= 4096 else { throw DecodeFailure("a refusal of \(count) bytes") }
                response = .refused(String(decoding: try reader.take(count), as: UTF8.self))
            default:
                throw DecodeFailure("unknown bulk response kind \(kind)")
            }
            try reader.expectEnd()
            return response
        } catch {
            throw PeerWireError("bulk response: \(error.reason)")
        }
    }

    private static func encode(_ attachment: AttachmentID, into writer: inout ByteWriter) {
        writer.append(attachment.hash)
        writer.u8(UInt8(attachment.sizes.count))
        for size in attachment.sizes { writer.u64(size) }
    }

    private static func attachmentID(_ reader: inout ByteReader) throws(DecodeFailure) -> AttachmentID {
        let hash = try reader.take(32)
        let parts = Int(try reader.u8())
        guard parts <= AttachmentID.maximumParts else { throw DecodeFailure("an attachment of \(parts) parts") }
        var sizes: [UInt64] = []
        for _ in 0..<parts { sizes.append(try reader.u64()) }
        do {
            return try AttachmentID(hash: hash, sizes: sizes)
        } catch {
            throw DecodeFailure(error.description)
        }
    }
}

/// A partition replica hosted on this storage, as the registry records it.
///
/// Stored under the partition key's byte form; value encoding (version 1, big-endian):
///
/// ```
/// 0x01 | group u64 | replication mode u8 | replica state u8
/// ```
public struct PartitionRecord: Hashable, Sendable, CustomStringConvertible {
    public let key: PartitionKey
    /// The local ID under which the WAL and the metadata store know the replica.
    /// Invariant: never `.invalid` or `.storageMetadata`, never reused.
    public let group: GroupID
    public var mode: ReplicationMode
    public var state: ReplicaState

    public init(key: PartitionKey, group: GroupID, mode: ReplicationMode, state: ReplicaState) {
        precondition(group.rawValue > GroupID.storageMetadata.rawValue, "group \(group) is reserved")
        self.key = key
        self.group = group
        self.mode = mode
        self.state = state
    }

    public var description: String { "\(key) \(group) mode=\(mode) state=\(state)" }

    static let encodingVersion: UInt8 = 1

    var encodedValue: [UInt8] {
        var writer = ByteWriter(version: Self.encodingVersion)
        writer.u64(group.rawValue)
        writer.u8(mode.rawValue)
        writer.u8(state.rawValue)
        return writer.bytes
    }

    init(key: PartitionKey, decoding bytes: [UInt8]) throws(DecodeFailure) {
        var reader = ByteReader(bytes)
        try reader.expectVersion(Self.encodingVersion)
        let group = try reader.u64()
        let modeCode = try reader.u8()
        let stateCode = try reader.u8()
        try reader.expectEnd()
        guard group > GroupID.storageMetadata.rawValue else { throw DecodeFailure("reserved group ID \(group)") }
        guard let mode = ReplicationMode(rawValue: modeCode) else {
            throw DecodeFailure("unknown replication mode \(modeCode)")
        }
        guard let state = ReplicaState(rawValue: stateCode) else {
            throw DecodeFailure("unknown replica state \(stateCode)")
        }
        self.init(key: key, group: GroupID(group), mode: mode, state: state)
    }
}

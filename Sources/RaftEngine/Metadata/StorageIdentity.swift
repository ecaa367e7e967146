/// Who a storage is: recorded on its first start, checked on every later one.
///
/// Value encoding (version 1, big-endian), under the key `identity` of the `meta` database:
///
/// ```
/// 0x01 | cluster ID 16 B | owner node ID 16 B | incarnation u64 | name length u8 | name
/// ```
public struct StorageIdentity: Hashable, Sendable {
    public let clusterID: ClusterID
    /// The node that serves this storage.
    public let nodeID: NodeID
    public let storageName: StorageName
    public let incarnation: StorageIncarnation

    public init(clusterID: ClusterID, nodeID: NodeID, storageName: StorageName, incarnation: StorageIncarnation) {
        self.clusterID = clusterID
        self.nodeID = nodeID
        self.storageName = storageName
        self.incarnation = incarnation
    }

    static let encodingVersion: UInt8 = 1

    var encoded: [UInt8] {
        var writer = ByteWriter(version: Self.encodingVersion)
        writer.append(clusterID.bytes)
        writer.append(nodeID.bytes)
        writer.u64(incarnation.rawValue)
        writer.storageName(storageName)
        return writer.bytes
    }

    init(decoding bytes: [UInt8]) throws(DecodeFailure) {
        var reader = ByteReader(bytes)
        try reader.expectVersion(Self.encodingVersion)
        let cluster = try reader.take(16)
        let node = try reader.take(16)
        let incarnation = try reader.u64()
        let name = try reader.storageName()
        try reader.expectEnd()
        self = try DecodeFailure.validating { () throws(IdentityError) in
            StorageIdentity(
                clusterID: try ClusterID(bytes: cluster), nodeID: try NodeID(bytes: node),
                storageName: name, incarnation: try StorageIncarnation(incarnation))
        }
    }
}

/// The identity of a cluster: a UUID chosen when the cluster is bootstrapped, recorded by
/// every storage that joins it and checked on every message between nodes, so that a node
/// or a disk from another cluster can never mix its data in.
public struct ClusterID: Hashable, Comparable, Sendable, CustomStringConvertible {
    let uuid: UUIDBytes

    /// Validates 16 bytes read from the disk or the network.
    public init(bytes: some Collection<UInt8>) throws(IdentityError) {
        uuid = try UUIDBytes(bytes: bytes)
    }

    /// Parses the canonical text form, e.g. `3f2b8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a6b`.
    public init(parsing text: String) throws(IdentityError) {
        uuid = try UUIDBytes(parsing: text)
    }

    /// A fresh random (version 4) identity from the system's secure random source.
    public static func random() -> ClusterID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// A random (version 4) identity from `generator` (tests pass a seeded one).
    public static func random(using generator: inout some RandomNumberGenerator) -> ClusterID {
        ClusterID(uuid: UUIDBytes.random(using: &generator))
    }

    private init(uuid: UUIDBytes) { self.uuid = uuid }

    /// The 16 bytes, in network (RFC 9562) order.
    public var bytes: [UInt8] { uuid.bytes }

    /// The canonical lower-case text form.
    public var description: String { uuid.description }

    public static func < (lhs: ClusterID, rhs: ClusterID) -> Bool { lhs.uuid < rhs.uuid }
}

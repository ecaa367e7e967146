import RaftConsensus

/// The version of a routing entry: the (term, index) of the committed configuration
/// change it derives from. Versions order by term, then index; a replica applies an
/// update only if it is strictly newer, so every replica converges on the same entry.
public struct RouteVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let term: Term
    public let index: LogIndex

    public init(term: Term, index: LogIndex) {
        self.term = term
        self.index = index
    }

    public static func < (lhs: RouteVersion, rhs: RouteVersion) -> Bool {
        (lhs.term, lhs.index) < (rhs.term, rhs.index)
    }

    public var description: String { "(term \(term), index \(index))" }
}

/// One replica of a partition as the routing table knows it.
public struct RouteReplica: Hashable, Sendable, CustomStringConvertible {
    public let member: MemberID
    public let storage: StorageName
    public let role: ReplicaRole
    /// The incarnation of the storage the replica was created on (nil: not recorded, for
    /// a partition's first members and entries written before incarnations were): a
    /// storage whose incarnation moved on no longer trusts the replica.
    public let incarnation: StorageIncarnation?

    public init(member: MemberID, storage: StorageName, role: ReplicaRole, incarnation: StorageIncarnation? = nil) {
        self.member = member
        self.storage = storage
        self.role = role
        self.incarnation = incarnation
    }

    /// The same replica with another role.
    func with(role: ReplicaRole) -> RouteReplica {
        RouteReplica(member: member, storage: storage, role: role, incarnation: incarnation)
    }

    public var description: String { "\(member)@\(storage)\(incarnation.map { "/\($0)" } ?? "")(\(role))" }
}

/// A partition's routing entry: where its replicas are and who leads, as of `version`.
///
/// Value encoding (version 2, big-endian; version 1 had no incarnation and still decodes):
///
/// ```
/// 0x02 | term u64 | index u64 | leader u64 | count u16 |
///      count x ( member u64 | role u8 | name length u8 | name bytes | incarnation u64 (0: none) )
/// ```
public struct RouteEntry: Hashable, Sendable {
    public let version: RouteVersion
    /// Invariant: sorted by member, members unique and non-zero, storages unique, at most
    /// `maximumReplicas`.
    public let replicas: [RouteReplica]
    /// The last known leader, or `MemberID.none`. A hint: it may be out of date.
    /// Invariant: `.none` or one of the replicas.
    public let leaderHint: MemberID

    /// A bound on the replicas of one partition, so a damaged or hostile count cannot make
    /// a decoder allocate without limit.
    public static let maximumReplicas = 64

    static let encodingVersion: UInt8 = 2

    /// No replicas, version (0, 0): a placeholder before a replica's entry is set.
    static let empty = try! RouteEntry(version: RouteVersion(term: .zero, index: .zero), replicas: [])

    /// Validates and sorts the replicas by member ID.
    public init(version: RouteVersion, replicas: [RouteReplica], leaderHint: MemberID = .none) throws(MetadataError) {
        let sorted = replicas.sorted { $0.member < $1.member }
        guard sorted.count <= Self.maximumReplicas else {
            throw .invalidValue("a route has \(sorted.count) replicas, more than \(Self.maximumReplicas)")
        }
        for (index, replica) in sorted.enumerated() {
            guard replica.member != .none else { throw .invalidValue("a route replica has member ID 0") }
            if index > 0, sorted[index - 1].member == replica.member {
                throw .invalidValue("member \(replica.member) appears twice in a route")
            }
        }
        // A storage hosts at most one replica of a partition (its registry is keyed by
        // partition), so two replicas on one storage is a bug upstream.
        if let storage = Self.firstDuplicate(sorted.map(\.storage)) {
            throw .invalidValue("storage \(storage) appears twice in a route")
        }
        guard leaderHint == .none || sorted.contains(where: { $0.member == leaderHint }) else {
            throw .invalidValue("leader hint \(leaderHint) is not one of the route's replicas")
        }
        self.version = version
        self.replicas = sorted
        self.leaderHint = leaderHint
    }

    private static func firstDuplicate(_ names: [StorageName]) -> StorageName? {
        let sorted = names.sorted()
        return sorted.indices.dropFirst().first { sorted[$0 - 1] == sorted[$0] }.map { sorted[$0] }
    }

    var encoded: [UInt8] {
        var writer = ByteWriter(version: Self.encodingVersion)
        writer.u64(version.term.rawValue)
        writer.u64(version.index.rawValue)
        writer.u64(leaderHint.rawValue)
        writer.u16(UInt16(replicas.count))
        for replica in replicas {
            writer.u64(replica.member.rawValue)
            writer.u8(replica.role.rawValue)
            writer.storageName(replica.storage)
            writer.u64(replica.incarnation?.rawValue ?? 0)
        }
        return writer.bytes
    }

    init(decoding bytes: [UInt8]) throws(DecodeFailure) {
        var reader = ByteReader(bytes)
        let encoding = try reader.u8()
        guard encoding == 1 || encoding == Self.encodingVersion else {
            throw DecodeFailure("unknown encoding version \(encoding), expected 1 or \(Self.encodingVersion)")
        }
        let version = RouteVersion(term: Term(try reader.u64()), index: LogIndex(try reader.u64()))
        let leader = MemberID(try reader.u64())
        let count = Int(try reader.u16())
        guard count <= Self.maximumReplicas else { throw DecodeFailure("replica count \(count) is over the bound") }
        var replicas: [RouteReplica] = []
        for _ in 0..<count {
            let member = MemberID(try reader.u64())
            let roleCode = try reader.u8()
            guard let role = ReplicaRole(rawValue: roleCode) else { throw DecodeFailure("unknown role \(roleCode)") }
            let storage = try reader.storageName()
            let incarnation = encoding == 1 ? nil : try reader.optionalIncarnation()
            replicas.append(RouteReplica(member: member, storage: storage, role: role, incarnation: incarnation))
        }
        try reader.expectEnd()
        // Stored entries were validated when written; a difference now is damage.
        guard replicas.map(\.member) == replicas.map(\.member).sorted() else {
            throw DecodeFailure("replicas are not sorted by member")
        }
        do {
            self = try RouteEntry(version: version, replicas: replicas, leaderHint: leader)
        } catch {
            throw DecodeFailure(error.description)
        }
    }
}

import RaftConsensus

/// A Raft group's membership configuration as the metadata store keeps it (the shape of
/// etcd/raft's ConfState), so a restarted group knows its members before replaying the log.
///
/// Value encoding (version 1, big-endian):
///
/// ```
/// 0x01 | flags u8 (bit 0: autoLeave) |
///      4 x ( count u16 | count x member u64 )   voters, learners, votersOutgoing, learnersNext
/// ```
public struct StoredConfState: Hashable, Sendable {
    /// Invariant for every list: sorted ascending, no duplicates, no `MemberID.none`,
    /// at most `maximumMembers`.
    public let voters: [MemberID]
    public let learners: [MemberID]
    /// The voters of the outgoing configuration during a joint change; empty otherwise.
    public let votersOutgoing: [MemberID]
    /// Voters of the outgoing configuration that become learners when the joint change ends.
    public let learnersNext: [MemberID]
    /// Whether the joint configuration is left automatically once it commits.
    public let autoLeave: Bool

    /// A bound on each list, so a damaged count cannot make a decoder allocate without limit.
    public static let maximumMembers = 64

    static let encodingVersion: UInt8 = 1

    /// Sorts the lists and validates them: no member 0, no duplicates within a list, and no
    /// member both a voter and a learner.
    public init(
        voters: [MemberID], learners: [MemberID] = [], votersOutgoing: [MemberID] = [],
        learnersNext: [MemberID] = [], autoLeave: Bool = false
    ) throws(MetadataError) {
        self.voters = try Self.validated(voters, "voters")
        self.learners = try Self.validated(learners, "learners")
        self.votersOutgoing = try Self.validated(votersOutgoing, "outgoing voters")
        self.learnersNext = try Self.validated(learnersNext, "next learners")
        self.autoLeave = autoLeave
        if let both = self.voters.first(where: { self.learners.contains($0) }) {
            throw .invalidValue("member \(both) is both a voter and a learner")
        }
    }

    var encoded: [UInt8] {
        var writer = ByteWriter(version: Self.encodingVersion)
        writer.u8(autoLeave ? 1 : 0)
        for list in [voters, learners, votersOutgoing, learnersNext] {
            writer.u16(UInt16(list.count))
            for member in list { writer.u64(member.rawValue) }
        }
        return writer.bytes
    }

    init(decoding bytes: [UInt8]) throws(DecodeFailure) {
        var reader = ByteReader(bytes)
        try reader.expectVersion(Self.encodingVersion)
        let flags = try reader.u8()
        guard flags & ~1 == 0 else { throw DecodeFailure("unknown flags \(flags)") }
        var lists: [[MemberID]] = []
        for _ in 0..<4 {
            let count = Int(try reader.u16())
            guard count <= Self.maximumMembers else { throw DecodeFailure("member count \(count) is over the bound") }
            var list: [MemberID] = []
            for _ in 0..<count { list.append(MemberID(try reader.u64())) }
            // Written sorted; an unsorted list on disk is damage, not something to repair.
            for i in list.indices.dropFirst() where !(list[i - 1] < list[i]) {
                throw DecodeFailure("member list is not strictly ascending")
            }
            lists.append(list)
        }
        try reader.expectEnd()
        do {
            self = try StoredConfState(
                voters: lists[0], learners: lists[1], votersOutgoing: lists[2], learnersNext: lists[3],
                autoLeave: flags & 1 == 1)
        } catch {
            throw DecodeFailure(error.description)
        }
    }

    private static func validated(_ members: [MemberID], _ name: String) throws(MetadataError) -> [MemberID] {
        let sorted = members.sorted()
        guard sorted.count <= maximumMembers else {
            throw .invalidValue("\(sorted.count) \(name), more than \(maximumMembers)")
        }
        guard !sorted.contains(.none) else { throw .invalidValue("member ID 0 among the \(name)") }
        for i in sorted.indices.dropFirst() where sorted[i - 1] == sorted[i] {
            throw .invalidValue("member \(sorted[i]) appears twice among the \(name)")
        }
        return sorted
    }
}

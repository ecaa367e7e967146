import RaftConsensus

/// A membership edit as a shard checks and proposes it (see `NodeHost.addLearner` and the
/// other membership calls, which orchestrate the steps around it).
package enum MembershipEdit: Sendable, Hashable {
    /// A new read-only member on `storage` (at `incarnation`, when known). Its member ID is
    /// the index of the change.
    case addLearner(StorageName, StorageIncarnation?)
    /// A learner becomes a voter, refused while it lags the leader by more than `maxLag`.
    case promote(MemberID, maxLag: UInt64)
    /// A member leaves.
    case remove(MemberID)
    /// A caught-up learner becomes a voter and `remove` leaves, in one joint change.
    case swap(promote: MemberID, remove: MemberID, maxLag: UInt64)
}

/// Why a membership change was refused before it was proposed. Nothing changed.
public enum MembershipRefusal: Hashable, Sendable, CustomStringConvertible {
    /// Another change of this partition is being committed or applied (or the group is
    /// still in a joint configuration). Retry when it is done.
    case changeInFlight(String)
    /// The member lags the leader by `lag` entries (or is not known to hold anything).
    case notCaughtUp(MemberID, lag: UInt64)
    /// The cluster knows no node serving this storage.
    case storageUnknown(StorageName)
    /// The storage already holds a replica of the partition.
    case storageTaken(StorageName, member: MemberID)
    /// The storage's node already holds a replica of the partition (on another storage):
    /// two replicas on one node would fail together.
    case nodeTaken(StorageName, member: MemberID)
    /// The member is not in the group (or has the wrong role for the edit).
    case memberUnknown(MemberID, String)
    /// The change would leave fewer live voters than a majority (or none).
    case wouldLoseQuorum(String)
    /// The leader's own replica cannot be removed by itself: transfer leadership first.
    case removingLeader(MemberID)

    public var isRetryable: Bool {
        switch self {
        case .changeInFlight, .notCaughtUp: return true
        case .storageUnknown, .storageTaken, .nodeTaken, .memberUnknown, .wouldLoseQuorum, .removingLeader: return false
        }
    }

    /// A short stable name for metrics and API errors.
    public var code: String {
        switch self {
        case .changeInFlight: return "change_in_flight"
        case .notCaughtUp: return "not_caught_up"
        case .storageUnknown: return "storage_unknown"
        case .storageTaken: return "storage_taken"
        case .nodeTaken: return "node_taken"
        case .memberUnknown: return "member_unknown"
        case .wouldLoseQuorum: return "would_lose_quorum"
        case .removingLeader: return "removing_leader"
        }
    }

    public var description: String {
        switch self {
        case .changeInFlight(let what): return "a membership change is in flight: \(what); retry when it is done"
        case .notCaughtUp(let member, let lag):
            return "member \(member) is not caught up: it lags the leader by \(lag) entries; wait and retry"
        case .storageUnknown(let storage): return "no node of the cluster serves storage \(storage)"
        case .storageTaken(let storage, let member):
            return "storage \(storage) already holds member \(member) of this partition"
        case .nodeTaken(let storage, let member):
            return
                "the node serving \(storage) already holds member \(member) of this partition: choose a storage of another node"
        case .memberUnknown(let member, let why): return "member \(member) \(why)"
        case .wouldLoseQuorum(let why): return "refused, it would lose the quorum: \(why)"
        case .removingLeader(let member):
            return "member \(member) leads: transfer leadership to another voter first, then remove it"
        }
    }
}

/// What a committed membership change did, as the calls of `NodeHost` report it.
public struct MembershipResult: Sendable, Hashable {
    /// The index of the (last) change.
    public var index: LogIndex
    /// The member the change added, if any.
    public var member: MemberID?
    /// The partition's routing entry after the change, as the serving replica holds it.
    public var route: RouteEntry?
}

/// Where the members a change adds live: the change's context, so that every replica
/// derives the same routing entry from the committed entry.
///
/// Encoding (version 2, big-endian): `0x02 | count u8 | count x ( member u64 | storage |
/// incarnation u64 )`, storage as `name length u8 | name`, incarnation 0 when unknown.
/// Version 1 (no incarnation) still decodes.
enum PlacementContext {
    static let version: UInt8 = 2

    static func encode(
        _ additions: [(member: MemberID, storage: StorageName, incarnation: StorageIncarnation?)]
    ) -> [UInt8] {
        var writer = ByteWriter(version: version)
        writer.u8(UInt8(additions.count))
        for addition in additions {
            writer.u64(addition.member.rawValue)
            writer.storageName(addition.storage)
            writer.u64(addition.incarnation?.rawValue ?? 0)
        }
        return writer.bytes
    }

    /// The added replicas (their role is the configuration's), or nil when the bytes are
    /// not a placement context (a change made by hand: its members have no known storage).
    static func decode(_ bytes: [UInt8]) -> [MemberID: RouteReplica]? {
        guard !bytes.isEmpty else { return [:] }
        var reader = ByteReader(bytes)
        do throws(DecodeFailure) {
            let encoding = try reader.u8()
            guard encoding == 1 || encoding == version else { return nil }
            let count = Int(try reader.u8())
            var out: [MemberID: RouteReplica] = [:]
            for _ in 0..<count {
                let member = MemberID(try reader.u64())
                let storage = try reader.storageName()
                let incarnation = encoding == 1 ? nil : try reader.optionalIncarnation()
                out[member] = RouteReplica(member: member, storage: storage, role: .learner, incarnation: incarnation)
            }
            try reader.expectEnd()
            return out
        } catch {
            return nil
        }
    }
}

extension RouteEntry {
    /// The entry after a committed change at `version` left the group in `conf`: members
    /// keep their storages, added ones take theirs from `added`, roles follow the
    /// configuration (voters of either majority vote; the rest learn), removed members
    /// go. Members whose storage is known nowhere are left out (a change made without a
    /// placement context) and their messages are dropped until a newer entry names them.
    func applying(_ conf: ConfState, added: [MemberID: RouteReplica], at version: RouteVersion) -> RouteEntry? {
        let voters = Set(conf.voters + conf.votersOutgoing)
        let members = voters.union(conf.learners + conf.learnersNext)
        var known: [MemberID: RouteReplica] = [:]
        for replica in replicas { known[replica.member] = replica }
        for (member, replica) in added { known[member] = replica }
        var out: [RouteReplica] = []
        for member in members.sorted() {
            guard let replica = known[member] else { return nil }
            out.append(replica.with(role: voters.contains(member) ? .voter : .learner))
        }
        return try? RouteEntry(version: version, replicas: out)
    }
}

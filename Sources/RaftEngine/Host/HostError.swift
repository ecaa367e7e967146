import RaftConsensus
import Synchronization

/// Why the host refused or could not finish a request. Every case says whether a retry can
/// succeed (`isRetryable`); the layers above map them to client errors.
public enum HostError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A queue or window is full (the pending-request bound, a worker inbox, the apply
    /// backlog or the WAL queue). Retry after a short back-off.
    case overloaded(String)
    /// This replica does not lead the group. `leader` is the member believed to lead and
    /// `node` the node hosting it, when known.
    case notLeader(leader: MemberID, node: NodeID?)
    /// The proposal was appended but overwritten by a new leader, or leadership moved
    /// before it was committed. It was not applied; retrying proposes it again.
    case lostLeadership
    /// The request was not finished before its deadline. A proposal may still commit later.
    case timedOut
    /// The consensus core refused the request (e.g. another conf change is pending).
    case refused(DropReason)
    /// No replica of this partition is hosted here.
    case partitionNotFound(PartitionKey)
    /// The request is invalid (too large, malformed); retrying it unchanged fails again.
    case invalid(String)
    /// The replica stopped after a storage or state machine failure; see the log.
    case replicaFailed(String)
    /// The host is shutting down or was stopped.
    case stopped
    /// A peer node this request needs is not reachable now (retryable).
    case unreachable(String)
    /// A membership change was refused before it was proposed (typed: see the refusal).
    case membership(MembershipRefusal)

    /// True when the same request may succeed later (possibly at another replica).
    public var isRetryable: Bool {
        switch self {
        case .overloaded, .notLeader, .lostLeadership, .timedOut, .unreachable: return true
        case .refused(let reason):
            switch reason {
            case .notLeader, .uncommittedLimitExceeded, .transferInProgress, .confChangeInProgress: return true
            case .invalidConfChange, .removed, .ignored: return false
            }
        case .partitionNotFound, .invalid, .replicaFailed, .stopped: return false
        case .membership(let refusal): return refusal.isRetryable
        }
    }

    public var description: String {
        switch self {
        case .overloaded(let what): return "overloaded: \(what); retry after a back-off"
        case .notLeader(let leader, let node):
            if leader == .none { return "not leader; the leader is unknown (an election may be under way)" }
            return "not leader; member \(leader) leads" + (node.map { " on node \($0)" } ?? "")
        case .lostLeadership: return "leadership changed before the proposal committed; it was not applied"
        case .timedOut: return "deadline exceeded"
        case .refused(let reason): return "refused by the consensus core: \(reason)"
        case .partitionNotFound(let key): return "partition \(key) has no replica on this node"
        case .invalid(let reason): return "invalid request: \(reason)"
        case .replicaFailed(let reason): return "replica stopped: \(reason)"
        case .stopped: return "the node host is stopped"
        case .unreachable(let what): return "\(what); retry when the node is back"
        case .membership(let refusal): return refusal.description
        }
    }
}

/// Proposals by how they ended, for metrics: `committed` (committed and applied here) or
/// the kind of error.
public final class ProposalResults: Sendable {
    /// The results' labels; a completion counts by index (no string hashing or
    /// allocation per proposal).
    static let labels = [
        "committed", "overloaded", "not_leader", "lost_leadership", "timed_out", "refused", "partition_not_found",
        "invalid", "replica_failed", "stopped", "unreachable", "membership",
    ]
    private let counts = Mutex<[UInt64]>(Array(repeating: 0, count: labels.count))

    public init() {}

    func count(_ result: Result<LogIndex, HostError>) {
        let index: Int
        switch result {
        case .success: index = 0
        case .failure(let error):
            switch error {
            case .overloaded: index = 1
            case .notLeader: index = 2
            case .lostLeadership: index = 3
            case .timedOut: index = 4
            case .refused: index = 5
            case .partitionNotFound: index = 6
            case .invalid: index = 7
            case .replicaFailed: index = 8
            case .stopped: index = 9
            case .unreachable: index = 10
            case .membership: index = 11
            }
        }
        counts.withLock { $0[index] &+= 1 }
    }

    /// Every result seen so far and its count.
    public var snapshot: [String: UInt64] {
        let values = counts.withLock { $0 }
        var out: [String: UInt64] = [:]
        for (label, value) in zip(Self.labels, values) where value > 0 { out[label] = value }
        return out
    }
}

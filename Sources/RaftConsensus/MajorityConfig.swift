/// Outcome of counting votes.
public enum VoteResult: Hashable, Sendable, CustomStringConvertible {
    /// Not enough responses yet to decide.
    case pending
    case lost
    case won

    public var description: String {
        switch self {
        case .pending: return "pending"
        case .lost: return "lost"
        case .won: return "won"
        }
    }
}

/// A set of voters deciding by simple majority. Kept as a sorted array so every iteration
/// order is deterministic.
public struct MajorityConfig: Hashable, Sendable, CustomStringConvertible {
    public private(set) var voters: [MemberID]

    public init(_ voters: [MemberID] = []) { self.voters = Array(Set(voters)).sorted() }

    public var isEmpty: Bool { voters.isEmpty }
    public var count: Int { voters.count }
    public func contains(_ id: MemberID) -> Bool { voters.contains(id) }

    public mutating func insert(_ id: MemberID) {
        if !contains(id) { voters.append(id); voters.sort() }
    }

    public mutating func remove(_ id: MemberID) { voters.removeAll { $0 == id } }

    /// Largest index acknowledged by a majority. `acked` returns nil for members without an
    /// acknowledgement (they count as zero). An empty config commits everything (`UInt64.max`)
    /// so that it is neutral inside a joint config.
    public func committedIndex(_ acked: (MemberID) -> LogIndex?) -> LogIndex {
        if voters.isEmpty { return LogIndex(UInt64.max) }
        // Small configs: sort a stack-ish array. Descending order; the quorum-th is committed.
        var values = voters.map { acked($0) ?? .zero }
        values.sort(by: >)
        return values[voters.count / 2]
    }

    /// Decides an election. `vote` returns nil for "no response yet". An empty config wins
    /// (neutral element of the joint config).
    public func voteResult(_ vote: (MemberID) -> Bool?) -> VoteResult {
        if voters.isEmpty { return .won }
        var yes = 0, missing = 0
        for id in voters {
            switch vote(id) {
            case .some(true): yes += 1
            case .some(false): break
            case .none: missing += 1
            }
        }
        let quorum = voters.count / 2 + 1
        if yes >= quorum { return .won }
        if yes + missing >= quorum { return .pending }
        return .lost
    }

    public var description: String { "(" + voters.map(\.description).joined(separator: " ") + ")" }
}

/// Two majority configs that must both agree: the incoming and (during a joint change) the
/// outgoing configuration.
public struct JointConfig: Hashable, Sendable, CustomStringConvertible {
    public var incoming: MajorityConfig
    /// Empty unless in a joint configuration.
    public var outgoing: MajorityConfig

    public init(incoming: MajorityConfig = MajorityConfig(), outgoing: MajorityConfig = MajorityConfig()) {
        self.incoming = incoming
        self.outgoing = outgoing
    }

    public var isJoint: Bool { !outgoing.isEmpty }

    /// Every voter of either half, sorted, without duplicates.
    public var allVoters: [MemberID] { Array(Set(incoming.voters + outgoing.voters)).sorted() }

    public func contains(_ id: MemberID) -> Bool { incoming.contains(id) || outgoing.contains(id) }

    /// Largest index committed under both halves.
    public func committedIndex(_ acked: (MemberID) -> LogIndex?) -> LogIndex {
        min(incoming.committedIndex(acked), outgoing.committedIndex(acked))
    }

    /// Both halves must win; either losing loses.
    public func voteResult(_ vote: (MemberID) -> Bool?) -> VoteResult {
        let a = incoming.voteResult(vote), b = outgoing.voteResult(vote)
        if a == b { return a }
        if a == .lost || b == .lost { return .lost }
        return .pending
    }

    public var description: String { isJoint ? "\(incoming)&&\(outgoing)" : incoming.description }
}

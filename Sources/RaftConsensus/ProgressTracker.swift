/// Membership configuration as tracked by the leader (and used by everyone for elections).
public struct TrackerConfig: Hashable, Sendable, CustomStringConvertible {
    public var voters = JointConfig()
    /// Learners: receive the log, never vote. Disjoint from both voter halves.
    public var learners: [MemberID] = []
    /// Voters demoted by the current joint change; they become learners on leaving it.
    public var learnersNext: [MemberID] = []
    /// Leave the joint configuration automatically once it is applied.
    public var autoLeave = false

    public init() {}

    public var confState: ConfState {
        ConfState(
            voters: voters.incoming.voters, votersOutgoing: voters.outgoing.voters,
            learners: learners, learnersNext: learnersNext, autoLeave: autoLeave)
    }

    public var description: String { confState.description }
}

/// Per-member progress plus vote tallies. Members are kept in a sorted array (a group has a
/// handful of members, so a linear scan beats hashing and keeps iteration deterministic).
public struct ProgressTracker: Sendable {
    public internal(set) var config = TrackerConfig()
    public private(set) var ids: [MemberID] = []
    private var progresses: [Progress] = []
    /// Votes received in the current election: parallel to `voteIDs`.
    private var voteIDs: [MemberID] = []
    private var voteValues: [Bool] = []
    let maxInflight: Int
    let maxInflightBytes: Int

    init(maxInflight: Int, maxInflightBytes: Int) {
        self.maxInflight = maxInflight
        self.maxInflightBytes = maxInflightBytes
    }

    func position(_ id: MemberID) -> Int? {
        for i in 0..<ids.count where ids[i] == id { return i }
        return nil
    }

    public func progress(_ id: MemberID) -> Progress? { position(id).map { progresses[$0] } }

    /// Mutates the progress of `id` in place; returns nil if `id` is not tracked.
    @discardableResult
    mutating func withProgress<R>(_ id: MemberID, _ body: (inout Progress) -> R) -> R? {
        guard let p = position(id) else { return nil }
        return body(&progresses[p])
    }

    /// Mutates every progress in member order.
    mutating func forEach(_ body: (MemberID, inout Progress) -> Void) {
        for i in 0..<ids.count { body(ids[i], &progresses[i]) }
    }

    func makeProgress(next: LogIndex, isLearner: Bool) -> Progress {
        Progress(
            next: next, inflights: Inflights(capacity: maxInflight, maxBytes: maxInflightBytes), isLearner: isLearner)
    }

    /// Installs a new configuration with its progress set (from the changer).
    mutating func apply(config newConfig: TrackerConfig, progress: [(MemberID, Progress)]) {
        config = newConfig
        let sorted = progress.sorted { $0.0 < $1.0 }
        ids = sorted.map(\.0)
        progresses = sorted.map(\.1)
    }

    /// Snapshot of the progress map as pairs (for the changer).
    var pairs: [(MemberID, Progress)] { Array(zip(ids, progresses)) }

    /// Index committed by the voters' acknowledgements.
    func committed() -> LogIndex {
        config.voters.committedIndex { id in position(id).map { progresses[$0].match } }
    }

    /// True if a quorum has been active recently (the caller counts itself as active).
    func quorumActive(selfID: MemberID) -> Bool {
        config.voters.voteResult { id in
            if id == selfID { return true }
            return position(id).map { progresses[$0].recentActive }
        } == .won
    }

    /// True if the only voter is `id`.
    func isSingleton(_ id: MemberID) -> Bool {
        !config.voters.isJoint && config.voters.incoming.voters == [id]
    }

    mutating func resetVotes() {
        voteIDs.removeAll(keepingCapacity: true)
        voteValues.removeAll(keepingCapacity: true)
    }

    /// Records a vote; only the first answer of each member counts.
    mutating func recordVote(_ id: MemberID, granted: Bool) {
        if voteIDs.contains(id) { return }
        voteIDs.append(id)
        voteValues.append(granted)
    }

    func vote(of id: MemberID) -> Bool? {
        for i in 0..<voteIDs.count where voteIDs[i] == id { return voteValues[i] }
        return nil
    }

    /// Counts the votes: (granted, rejected, result).
    func tallyVotes() -> (granted: Int, rejected: Int, result: VoteResult) {
        var granted = 0, rejected = 0
        for id in config.voters.allVoters {
            if let v = vote(of: id) { if v { granted += 1 } else { rejected += 1 } }
        }
        return (granted, rejected, config.voters.voteResult { vote(of: $0) })
    }

    /// Whether `id` may campaign: it is a voter in some half of the config.
    func isVoter(_ id: MemberID) -> Bool { config.voters.contains(id) }

    /// Stable multi-line description for golden tests.
    public func describe() -> String {
        zip(ids, progresses).map { "\($0.0): \($0.1)" }.joined(separator: "\n")
    }
}

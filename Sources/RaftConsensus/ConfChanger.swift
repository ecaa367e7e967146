/// Why a conf change cannot be applied.
public enum ConfChangeError: Error, Hashable, Sendable, CustomStringConvertible {
    case alreadyJoint
    case notJoint
    /// A single-step change may alter at most one voter.
    case tooManyVoterChanges
    /// The change would leave no voters.
    case removesAllVoters
    case invalidMember

    public var description: String {
        switch self {
        case .alreadyJoint: return "already in a joint configuration"
        case .notJoint: return "not in a joint configuration"
        case .tooManyVoterChanges: return "more than one voter changed in a single-step change"
        case .removesAllVoters: return "configuration would have no voters"
        case .invalidMember: return "invalid member id"
        }
    }
}

/// Pure function object computing the next configuration and progress set from a change.
/// It never mutates the tracker; the caller installs the result.
struct ConfChanger {
    var config: TrackerConfig
    var progress: [(MemberID, Progress)]
    /// Next index for newly added members.
    let lastIndex: LogIndex
    let tracker: ProgressTracker

    init(tracker: ProgressTracker, lastIndex: LogIndex) {
        self.config = tracker.config
        self.progress = tracker.pairs
        self.lastIndex = lastIndex
        self.tracker = tracker
    }

    typealias Outcome = Result<(TrackerConfig, [(MemberID, Progress)]), ConfChangeError>

    /// Enters a joint configuration: outgoing = current voters, incoming = edited copy.
    mutating func enterJoint(autoLeave: Bool, _ changes: [ConfChangeSingle]) -> Outcome {
        if config.voters.isJoint { return .failure(.alreadyJoint) }
        if config.voters.incoming.isEmpty { return .failure(.removesAllVoters) }
        config.voters.outgoing = config.voters.incoming
        if let err = applyAll(changes) { return .failure(err) }
        if config.voters.incoming.isEmpty { return .failure(.removesAllVoters) }
        config.autoLeave = autoLeave
        return .success((config, progress))
    }

    /// Leaves the joint configuration: drop the outgoing half, demoted voters become learners.
    mutating func leaveJoint() -> Outcome {
        if !config.voters.isJoint { return .failure(.notJoint) }
        for id in config.learnersNext {
            insertSorted(&config.learners, id)
            setLearner(id, true)
        }
        config.learnersNext = []
        let outgoing = config.voters.outgoing.voters
        config.voters.outgoing = MajorityConfig()
        for id in outgoing where !config.voters.incoming.contains(id) && !config.learners.contains(id) {
            progress.removeAll { $0.0 == id }
        }
        config.autoLeave = false
        return .success((config, progress))
    }

    /// A change touching at most one voter, applied without a joint phase.
    mutating func simple(_ changes: [ConfChangeSingle]) -> Outcome {
        if config.voters.isJoint { return .failure(.alreadyJoint) }
        let before = Set(config.voters.incoming.voters)
        if let err = applyAll(changes) { return .failure(err) }
        let after = Set(config.voters.incoming.voters)
        if before.symmetricDifference(after).count > 1 { return .failure(.tooManyVoterChanges) }
        if config.voters.incoming.isEmpty { return .failure(.removesAllVoters) }
        return .success((config, progress))
    }

    private mutating func applyAll(_ changes: [ConfChangeSingle]) -> ConfChangeError? {
        for c in changes {
            if c.member == .none { return .invalidMember }
            switch c {
            case .addVoter(let id): addVoter(id)
            case .addLearner(let id): addLearner(id)
            case .remove(let id): remove(id)
            }
        }
        return nil
    }

    private mutating func ensureProgress(_ id: MemberID, learner: Bool) {
        if progress.contains(where: { $0.0 == id }) { return }
        var p = tracker.makeProgress(next: lastIndex.next, isLearner: learner)
        // A new member counts as recently active so CheckQuorum does not immediately step the
        // leader down before it had a chance to hear from it.
        p.recentActive = true
        progress.append((id, p))
    }

    private mutating func setLearner(_ id: MemberID, _ learner: Bool) {
        for i in 0..<progress.count where progress[i].0 == id { progress[i].1.isLearner = learner }
    }

    private mutating func addVoter(_ id: MemberID) {
        ensureProgress(id, learner: false)
        config.voters.incoming.insert(id)
        config.learners.removeAll { $0 == id }
        config.learnersNext.removeAll { $0 == id }
        setLearner(id, false)
    }

    private mutating func addLearner(_ id: MemberID) {
        ensureProgress(id, learner: true)
        if config.learners.contains(id) { return }
        config.voters.incoming.remove(id)
        if config.voters.outgoing.contains(id) {
            // Still a voter of the outgoing half: becomes a learner only on leaving the joint.
            insertSorted(&config.learnersNext, id)
        } else {
            insertSorted(&config.learners, id)
            setLearner(id, true)
        }
    }

    private mutating func remove(_ id: MemberID) {
        config.voters.incoming.remove(id)
        config.learners.removeAll { $0 == id }
        config.learnersNext.removeAll { $0 == id }
        // Keep the progress while it is still an outgoing voter.
        if !config.voters.outgoing.contains(id) { progress.removeAll { $0.0 == id } }
    }

    private func insertSorted(_ list: inout [MemberID], _ id: MemberID) {
        if !list.contains(id) { list.append(id); list.sort() }
    }

    /// Builds a configuration from a persisted `ConfState` (startup or snapshot install).
    static func restore(
        _ cs: ConfState, tracker: ProgressTracker, lastIndex: LogIndex
    ) -> (TrackerConfig, [(MemberID, Progress)]) {
        var cfg = TrackerConfig()
        cfg.voters = JointConfig(incoming: MajorityConfig(cs.voters), outgoing: MajorityConfig(cs.votersOutgoing))
        cfg.learners = cs.learners
        cfg.learnersNext = cs.learnersNext
        cfg.autoLeave = cs.autoLeave
        var progress: [(MemberID, Progress)] = []
        for id in cfg.voters.allVoters {
            progress.append((id, tracker.makeProgress(next: lastIndex.next, isLearner: false)))
        }
        for id in cs.learners where !progress.contains(where: { $0.0 == id }) {
            progress.append((id, tracker.makeProgress(next: lastIndex.next, isLearner: true)))
        }
        return (cfg, progress)
    }
}

/// One atomic edit to the membership.
public enum ConfChangeSingle: Hashable, Sendable, CustomStringConvertible {
    /// Add a voter or promote a learner to voter.
    case addVoter(MemberID)
    /// Add a learner or demote a voter to learner.
    case addLearner(MemberID)
    /// Remove the member entirely.
    case remove(MemberID)

    /// The member the change is about.
    public var member: MemberID {
        switch self {
        case .addVoter(let id), .addLearner(let id), .remove(let id): return id
        }
    }

    public var description: String {
        switch self {
        case .addVoter(let id): return "v\(id)"
        case .addLearner(let id): return "l\(id)"
        case .remove(let id): return "r\(id)"
        }
    }
}

/// How a conf change moves between configurations.
public enum ConfChangeTransition: Hashable, Sendable {
    /// Single-step change when at most one voter changes, otherwise joint with automatic leave.
    case auto
    /// Always go through a joint configuration and leave it automatically once applied.
    case jointImplicit
    /// Always go through a joint configuration; the application proposes the leave itself.
    case jointExplicit
}

/// A membership change proposal. A change with no edits leaves a joint configuration.
public struct ConfChange: Hashable, Sendable, CustomStringConvertible {
    /// The edits, applied in order.
    public var changes: [ConfChangeSingle]
    /// Single-step or joint.
    public var transition: ConfChangeTransition
    /// Opaque bytes for the application (as etcd's ConfChangeV2 context): the core carries
    /// them in the entry and never reads them. raftd puts the storages of added members
    /// here, so every replica derives the same routing entry from the committed change.
    public var context: [UInt8]

    public init(_ changes: [ConfChangeSingle], transition: ConfChangeTransition = .auto, context: [UInt8] = []) {
        self.changes = changes
        self.transition = transition
        self.context = context
    }

    /// The change that leaves a joint configuration.
    public static let leaveJoint = ConfChange([], transition: .auto)

    /// True when this change leaves the current joint configuration.
    public var isLeaveJoint: Bool { changes.isEmpty }

    /// Whether applying it enters a joint configuration, and if so whether leaving is automatic.
    public var entersJoint: (joint: Bool, autoLeave: Bool) {
        if changes.isEmpty { return (false, false) }
        switch transition {
        case .auto: return (changes.count > 1, true)
        case .jointImplicit: return (true, true)
        case .jointExplicit: return (true, false)
        }
    }

    public var description: String {
        if changes.isEmpty { return "leave-joint" }
        let body = changes.map(\.description).joined(separator: " ")
        switch transition {
        case .auto: return body
        case .jointImplicit: return body + " joint"
        case .jointExplicit: return body + " joint-explicit"
        }
    }
}

/// The membership as persisted in snapshots and reported after each applied change.
public struct ConfState: Hashable, Sendable, CustomStringConvertible {
    /// Voters of the incoming (or only) majority.
    public var voters: [MemberID]
    /// Voters of the outgoing majority; non-empty only in a joint configuration.
    public var votersOutgoing: [MemberID]
    /// Learners.
    public var learners: [MemberID]
    /// Members that become learners when the joint configuration is left (demoted voters).
    public var learnersNext: [MemberID]
    /// Whether the joint configuration is left automatically.
    public var autoLeave: Bool

    public init(
        voters: [MemberID] = [], votersOutgoing: [MemberID] = [], learners: [MemberID] = [],
        learnersNext: [MemberID] = [], autoLeave: Bool = false
    ) {
        self.voters = voters.sorted()
        self.votersOutgoing = votersOutgoing.sorted()
        self.learners = learners.sorted()
        self.learnersNext = learnersNext.sorted()
        self.autoLeave = autoLeave
    }

    public var description: String {
        var s = "voters=(\(voters.map(\.description).joined(separator: " ")))"
        if !votersOutgoing.isEmpty { s += "&&(\(votersOutgoing.map(\.description).joined(separator: " ")))" }
        if !learners.isEmpty { s += " learners=(\(learners.map(\.description).joined(separator: " ")))" }
        if !learnersNext.isEmpty { s += " learners_next=(\(learnersNext.map(\.description).joined(separator: " ")))" }
        if autoLeave { s += " autoleave" }
        return s
    }
}

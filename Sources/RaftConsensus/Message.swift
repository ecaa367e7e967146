/// Kinds of messages exchanged between members of one group.
public enum MessageKind: UInt8, Hashable, Sendable, CustomStringConvertible {
    /// Leader → follower: entries after (index, logTerm), plus the leader's commit.
    case append
    /// Follower → leader: acknowledgement or rejection of `append`/`snapshot`.
    case appendResponse
    /// Candidate → voter: request a vote in `term`.
    case vote
    case voteResponse
    /// Pre-candidate → voter: "would you vote for me in `term`?" (no state change on the voter).
    case preVote
    case preVoteResponse
    /// Leader → follower: install this snapshot.
    case snapshot
    /// Leader → member: I am alive; here is the commit you may apply. May carry a read context
    /// or the quiesce flag.
    case heartbeat
    case heartbeatResponse
    /// Follower → leader: forwarded proposal (only when forwarding is enabled).
    case propose
    /// Follower → leader: forwarded ReadIndex request.
    case readIndex
    /// Leader → follower: the index a forwarded read must wait for.
    case readIndexResponse
    /// Follower → leader: forwarded leadership transfer request.
    case transferLeader
    /// Leader → transferee: campaign now, skipping PreVote and lease checks.
    case timeoutNow

    public var description: String {
        switch self {
        case .append: return "app"
        case .appendResponse: return "appResp"
        case .vote: return "vote"
        case .voteResponse: return "voteResp"
        case .preVote: return "preVote"
        case .preVoteResponse: return "preVoteResp"
        case .snapshot: return "snap"
        case .heartbeat: return "heartbeat"
        case .heartbeatResponse: return "heartbeatResp"
        case .propose: return "prop"
        case .readIndex: return "readIndex"
        case .readIndexResponse: return "readIndexResp"
        case .transferLeader: return "transferLeader"
        case .timeoutNow: return "timeoutNow"
        }
    }

    /// Responses to a vote request of this kind.
    var responseKind: MessageKind {
        switch self {
        case .vote: return .voteResponse
        case .preVote: return .preVoteResponse
        default: preconditionFailure("no vote response for \(self)")
        }
    }
}

/// A message between two members. Fields that a kind does not use stay at their zero value.
public struct Message: Hashable, Sendable, CustomStringConvertible {
    public var kind: MessageKind
    public var from: MemberID
    public var to: MemberID
    /// Sender's term. Zero for forwarded requests (propose, readIndex, transferLeader), which
    /// are independent of terms.
    public var term: Term
    /// append: term of the entry at `index`. Vote requests: candidate's last term.
    /// Rejections: term of the hint entry.
    public var logTerm: Term
    /// append: index preceding `entries`. Vote requests: candidate's last index.
    /// appendResponse: highest matching index (or the rejected one). readIndexResponse: read index.
    public var index: LogIndex
    public var entries: [Entry]
    /// Commit index of the leader (append/heartbeat) or of the responder (responses).
    public var commit: LogIndex
    public var snapshot: Snapshot?
    public var reject: Bool
    /// Rejections of `append`: the follower's best guess of where the logs may agree.
    public var rejectHint: LogIndex
    /// ReadIndex request context; also the "transfer" marker on vote requests.
    public var context: [UInt8]
    /// heartbeat: the leader is quiescing; the follower may stop ticking.
    public var quiesce: Bool

    public init(
        kind: MessageKind, from: MemberID, to: MemberID, term: Term = .zero,
        logTerm: Term = .zero, index: LogIndex = .zero, entries: [Entry] = [],
        commit: LogIndex = .zero, snapshot: Snapshot? = nil, reject: Bool = false,
        rejectHint: LogIndex = .zero, context: [UInt8] = [], quiesce: Bool = false
    ) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
        self.quiesce = quiesce
    }

    /// Marker placed in `context` of vote requests triggered by a leadership transfer.
    static let transferContext: [UInt8] = Array("transfer".utf8)

    /// True for a vote request of a leadership transfer (which skips PreVote and leases).
    public var isTransferVote: Bool { kind == .vote && context == Message.transferContext }

    /// Stable text for golden tests.
    public var description: String {
        var s = "\(from)->\(to) \(kind)"
        if term != .zero { s += " t\(term)" }
        switch kind {
        case .append:
            s += " prev=\(index)@\(logTerm) commit=\(commit)"
            if !entries.isEmpty { s += " [" + entries.map(\.description).joined(separator: ", ") + "]" }
        case .appendResponse:
            s += reject ? " reject idx=\(index) hint=\(rejectHint)@\(logTerm)" : " idx=\(index)"
            s += " commit=\(commit)"
        case .vote, .preVote:
            s += " last=\(index)@\(logTerm)"
            if context == Message.transferContext { s += " transfer" }
        case .voteResponse, .preVoteResponse:
            s += reject ? " rejected" : " granted"
        case .snapshot:
            if let snap = snapshot { s += " \(snap)" }
        case .heartbeat:
            s += " commit=\(commit)"
            if quiesce { s += " quiesce" }
        case .heartbeatResponse:
            s += " commit=\(commit)"
        case .propose:
            s += " [" + entries.map(\.description).joined(separator: ", ") + "]"
        case .readIndexResponse:
            s += " idx=\(index)"
        case .readIndex, .transferLeader, .timeoutNow:
            break
        }
        if !context.isEmpty && kind != .vote && kind != .preVote { s += " ctx=\(Describe.bytes(context))" }
        return s
    }
}

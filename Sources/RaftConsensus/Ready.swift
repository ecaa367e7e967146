/// Volatile role information, reported when it changes.
public struct SoftState: Hashable, Sendable, CustomStringConvertible {
    public var leader: MemberID
    public var role: RaftRole

    public var description: String { "lead=\(leader) role=\(role)" }
}

/// The role of a member.
public enum RaftRole: Hashable, Sendable, CustomStringConvertible {
    case follower, preCandidate, candidate, leader

    public var description: String {
        switch self {
        case .follower: return "follower"
        case .preCandidate: return "pre-candidate"
        case .candidate: return "candidate"
        case .leader: return "leader"
        }
    }
}

/// The result of a ReadIndex request: the read with `context` is linearizable once the
/// application has applied through `index`.
public struct ReadState: Hashable, Sendable, CustomStringConvertible {
    public var index: LogIndex
    public var context: [UInt8]

    public var description: String { "read idx=\(index) ctx=\(Describe.bytes(context))" }
}

/// Everything the caller must do after the core changed state. The contract, in order:
///
/// 1. `messages` may be sent right away, before anything is persisted. They are the leader's
///    appends, heartbeats, snapshots and TimeoutNow in a term that is already durable; sending
///    appends before the leader's own fsync is safe because the leader counts itself towards
///    the commit quorum only after `advance` reports the write durable (thesis §10.2.1).
/// 2. Persist, atomically or in this order: `snapshot` (if any), then `entries` (which may
///    replace a suffix of the stored log), then `hardState` (if non-nil). Sync if `mustSync`.
/// 3. Only now send `messagesAfterPersist`: votes, vote requests and every acknowledgement
///    depend on the state just persisted.
/// 4. Install `snapshot` into the state machine, then apply `committedEntries` in order (they
///    may include entries from step 2, which is why persisting comes first). For a
///    `.confChange` entry call `RawNode.applyConfChange`.
/// 5. Serve `readStates` once the applied index reaches each one's index.
/// 6. Call `RawNode.advance(_:)` with this Ready. `ready()` must not be called again before.
public struct Ready: Sendable, CustomStringConvertible {
    /// Set when leader or role changed.
    public var softState: SoftState?
    /// Set when term, vote or commit changed.
    public var hardState: HardState?
    /// Entries to persist.
    public var entries: [Entry] = []
    /// Snapshot to persist and install.
    public var snapshot: Snapshot?
    /// May be sent before persisting.
    public var messages: [Message] = []
    /// Must be sent only after persisting.
    public var messagesAfterPersist: [Message] = []
    /// Entries to apply.
    public var committedEntries: [Entry] = []
    /// Completed ReadIndex requests.
    public var readStates: [ReadState] = []
    /// Whether step 2 needs an fsync (new entries, or term/vote changed).
    public var mustSync = false

    /// True if there is nothing to do.
    public var isEmpty: Bool {
        softState == nil && hardState == nil && entries.isEmpty && snapshot == nil && messages.isEmpty
            && messagesAfterPersist.isEmpty && committedEntries.isEmpty && readStates.isEmpty
    }

    /// All messages, in send order (for callers that persist synchronously anyway).
    public var allMessages: [Message] { messages + messagesAfterPersist }

    /// Stable multi-line text for golden tests.
    public var description: String {
        var lines: [String] = []
        if let s = softState { lines.append("soft: \(s)") }
        if let h = hardState { lines.append("hard: \(h)") }
        if let s = snapshot { lines.append("snapshot: \(s)") }
        if !entries.isEmpty {
            lines.append("entries:")
            lines += entries.map { "  \($0)" }
        }
        if !committedEntries.isEmpty {
            lines.append("committed:")
            lines += committedEntries.map { "  \($0)" }
        }
        if !messages.isEmpty {
            lines.append("send:")
            lines += messages.map { "  \($0)" }
        }
        if !messagesAfterPersist.isEmpty {
            lines.append("send-after-persist:")
            lines += messagesAfterPersist.map { "  \($0)" }
        }
        if !readStates.isEmpty {
            lines.append("reads:")
            lines += readStates.map { "  \($0)" }
        }
        return lines.isEmpty ? "(empty)" : lines.joined(separator: "\n")
    }
}

/// Why a request was not accepted. Dropped requests are values, not errors: callers decide
/// whether to retry or redirect.
public enum DropReason: Hashable, Sendable, CustomStringConvertible {
    /// This member is not the leader (the known leader, if any, is attached).
    case notLeader(knownLeader: MemberID)
    /// The uncommitted tail is over `maxUncommittedEntriesSize`.
    case uncommittedLimitExceeded
    /// A leadership transfer is in progress.
    case transferInProgress
    /// Another conf change is not yet applied.
    case confChangeInProgress
    /// The conf change is invalid in the current configuration.
    case invalidConfChange(ConfChangeError)
    /// This member was removed from the group.
    case removed
    /// Nothing to do (e.g. empty proposal, transfer to self, learner transferee).
    case ignored

    public var description: String {
        switch self {
        case .notLeader(let l): return "not leader (leader \(l))"
        case .uncommittedLimitExceeded: return "uncommitted limit exceeded"
        case .transferInProgress: return "transfer in progress"
        case .confChangeInProgress: return "conf change in progress"
        case .invalidConfChange(let e): return "invalid conf change: \(e)"
        case .removed: return "removed"
        case .ignored: return "ignored"
        }
    }
}

/// Outcome of a proposal or request.
public enum ProposalOutcome: Hashable, Sendable, CustomStringConvertible {
    /// Appended to the leader's log at `index` in `term` (still may be lost if leadership changes).
    case appended(index: LogIndex, term: Term)
    /// Sent to the leader; no index is known yet.
    case forwarded(to: MemberID)
    /// Accepted for processing (reads, transfers).
    case accepted
    case dropped(DropReason)

    public var description: String {
        switch self {
        case .appended(let i, let t): return "appended \(i)@\(t)"
        case .forwarded(let to): return "forwarded to \(to)"
        case .accepted: return "accepted"
        case .dropped(let r): return "dropped: \(r)"
        }
    }

    public var isDropped: Bool {
        if case .dropped = self { return true }
        return false
    }
}

/// The state that must survive a crash before any vote or acknowledgement is sent.
public struct HardState: Hashable, Sendable, CustomStringConvertible {
    public var term: Term
    /// Whom this member voted for in `term` (`.none` if nobody).
    public var vote: MemberID
    /// Highest index known committed. Persisting it is an optimisation, not a safety need.
    public var commit: LogIndex

    public init(term: Term = .zero, vote: MemberID = .none, commit: LogIndex = .zero) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public static let empty = HardState()

    public var description: String { "term=\(term) vote=\(vote) commit=\(commit)" }
}

/// Identifies the log prefix a snapshot replaces.
public struct SnapshotMetadata: Hashable, Sendable, CustomStringConvertible {
    /// Last index covered by the snapshot.
    public var index: LogIndex
    /// Term of the entry at `index`.
    public var term: Term
    /// Membership as of `index`.
    public var confState: ConfState

    public init(index: LogIndex, term: Term, confState: ConfState) {
        self.index = index
        self.term = term
        self.confState = confState
    }

    public var description: String { "index=\(index) term=\(term) \(confState)" }
}

/// A state machine snapshot. The consensus core never looks inside `data`.
public struct Snapshot: Hashable, Sendable, CustomStringConvertible {
    public var metadata: SnapshotMetadata
    /// Opaque application bytes.
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata, data: [UInt8]) {
        self.metadata = metadata
        self.data = data
    }

    /// The empty snapshot of a fresh log.
    public static let empty = Snapshot(
        metadata: SnapshotMetadata(index: .zero, term: .zero, confState: ConfState()), data: [])

    public var isEmpty: Bool { metadata.index == .zero }

    public var description: String { "snapshot(\(metadata) data=\(data.count)B)" }
}

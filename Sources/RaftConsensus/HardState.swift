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

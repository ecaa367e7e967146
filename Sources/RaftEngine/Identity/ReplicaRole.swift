/// A replica's role in its Raft group.
public enum ReplicaRole: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Votes and can be elected leader.
    case voter = 1
    /// Receives the log and serves stale reads; neither votes nor counts for commit.
    case learner = 2

    // The raw values are the on-disk codes; 0 is left unused so zeroed bytes never decode.

    public var description: String {
        switch self {
        case .voter: "voter"
        case .learner: "learner"
        }
    }
}

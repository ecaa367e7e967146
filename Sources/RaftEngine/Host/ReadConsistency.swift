import RaftConsensus

/// How strongly a read must be ordered after writes.
public enum ReadConsistency: Hashable, Sendable {
    /// Linearizable: a ReadIndex round with a quorum (the default).
    case readIndex
    /// Linearizable if clocks drift less than the election timeout: the leader answers
    /// from its lease without a round trip when it can, and falls back to ReadIndex.
    case lease
}

/// How the leader currently replicates to a follower.
public enum ProgressState: Hashable, Sendable, CustomStringConvertible {
    /// Unknown match: send one append at a time and wait for the answer.
    case probe
    /// Known match: stream appends optimistically, bounded by `Inflights`.
    case replicate
    /// Follower needs a snapshot; nothing else is sent until it reports back.
    case snapshot

    public var description: String {
        switch self {
        case .probe: return "probe"
        case .replicate: return "replicate"
        case .snapshot: return "snapshot"
        }
    }
}

/// The leader's view of one follower (or of itself).
public struct Progress: Sendable, CustomStringConvertible {
    /// Highest index known to be durably replicated on the member.
    public internal(set) var match: LogIndex
    /// Next index to send.
    public internal(set) var next: LogIndex
    public internal(set) var state: ProgressState = .probe
    /// Index of the snapshot in flight while in `.snapshot`.
    public internal(set) var pendingSnapshot: LogIndex = .zero
    /// Heard from the member since the last CheckQuorum round.
    public internal(set) var recentActive = false
    /// In probe state: an append is outstanding, wait for a response or heartbeat.
    public internal(set) var probeSent = false
    public internal(set) var inflights: Inflights
    public internal(set) var isLearner: Bool
    /// Highest commit index the member has told us it knows (for quiescing).
    public internal(set) var knownCommit: LogIndex = .zero
    /// The member acknowledged an append since the last periodic heartbeat: it is alive
    /// and follows this leader, and appends carry the commit, so that heartbeat is skipped
    /// (busy groups would otherwise send both).
    var ackedSinceHeartbeat = false

    init(next: LogIndex, inflights: Inflights, isLearner: Bool) {
        self.match = .zero
        self.next = next
        self.inflights = inflights
        self.isLearner = isLearner
    }

    private mutating func resetState(_ s: ProgressState) {
        probeSent = false
        pendingSnapshot = .zero
        state = s
        inflights.reset()
    }

    /// Back to probing; after a snapshot, continue right after it.
    mutating func becomeProbe() {
        if state == .snapshot {
            let pending = pendingSnapshot
            resetState(.probe)
            next = max(match.next, pending.next)
        } else {
            resetState(.probe)
            next = match.next
        }
    }

    mutating func becomeReplicate() {
        resetState(.replicate)
        next = match.next
    }

    mutating func becomeSnapshot(_ index: LogIndex) {
        resetState(.snapshot)
        pendingSnapshot = index
    }

    /// Records an acknowledgement of `index`. Returns false for a stale one.
    mutating func maybeUpdate(_ index: LogIndex) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index.next)
        return updated
    }

    /// Handles a rejection of the append after `rejected`; `hint` is the highest index that
    /// may still match. Returns false if the rejection is stale.
    mutating func maybeDecrTo(rejected: LogIndex, hint: LogIndex) -> Bool {
        if state == .replicate {
            // Stale if we already know a match past the rejected index.
            if rejected <= match { return false }
            next = match.next
            return true
        }
        // Probe: only the rejection of our latest probe counts.
        if next.previous != rejected { return false }
        next = max(min(rejected, hint.next), match.next)
        probeSent = false
        return true
    }

    /// Bookkeeping after sending an append with `entries` entries, the last being `lastIndex`.
    mutating func sentEntries(count n: Int, lastIndex: LogIndex, bytes: Int) {
        switch state {
        case .replicate:
            if n > 0 {
                next = lastIndex.next
                inflights.add(lastIndex, bytes: bytes)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            preconditionFailure("sending entries in snapshot state")
        }
    }

    /// Whether the leader should hold back appends to this member.
    public var isPaused: Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflights.isFull
        case .snapshot: return true
        }
    }

    public var description: String {
        var s = "\(state) match=\(match) next=\(next)"
        if isLearner { s += " learner" }
        if state == .snapshot { s += " pendingSnap=\(pendingSnapshot)" }
        if probeSent { s += " paused" }
        if inflights.count > 0 { s += " inflight=\(inflights.count)/\(inflights.bytes)B" }
        if inflights.isFull { s += "[full]" }
        return s
    }
}

import RaftConsensus

/// The simulated network: per-message delay, loss, duplication, reordering, and directed
/// link cuts (a symmetric partition cuts both directions, a one-way partition one).
struct SimNetwork {
    struct InFlight {
        var message: Message
        var deliverAt: Int
        var seq: Int
    }

    var queue: [InFlight] = []
    /// Directed cut links as (from, to) pairs, kept sorted for determinism.
    var cut: [(MemberID, MemberID)] = []
    var seq = 0

    func isCut(_ from: MemberID, _ to: MemberID) -> Bool {
        cut.contains { $0.0 == from && $0.1 == to }
    }

    mutating func cutLink(_ from: MemberID, _ to: MemberID) {
        if !isCut(from, to) { cut.append((from, to)) }
        cut.sort { ($0.0, $0.1) < ($1.0, $1.1) }
    }

    mutating func healAll() { cut = [] }

    /// Enqueues a message with random delay; may drop or duplicate it. Returns false if dropped.
    mutating func send(
        _ m: Message, now: Int, rng: inout SplitMix64, dropPerMille: Int, dupPerMille: Int, maxDelay: Int
    ) -> Bool {
        if isCut(m.from, m.to) || rng.chance(dropPerMille, in: 1000) { return false }
        let copies = rng.chance(dupPerMille, in: 1000) ? 2 : 1
        for _ in 0..<copies {
            seq += 1
            queue.append(InFlight(message: m, deliverAt: now + 1 + rng.next(below: maxDelay + 1), seq: seq))
        }
        return true
    }

    /// Removes and returns the messages due at `now`, shuffled (reordering), plus the ones
    /// lost because their link was cut while they were in flight.
    mutating func due(now: Int, rng: inout SplitMix64) -> (deliver: [Message], lost: [Message]) {
        var ready: [InFlight] = []
        var rest: [InFlight] = []
        for f in queue { if f.deliverAt <= now { ready.append(f) } else { rest.append(f) } }
        queue = rest
        ready.sort { $0.seq < $1.seq }
        // Fisher–Yates with the run's PRNG.
        var i = ready.count - 1
        while i > 0 {
            let j = rng.next(below: i + 1)
            ready.swapAt(i, j)
            i -= 1
        }
        // A link cut after sending also loses messages still in flight on it.
        let msgs = ready.map(\.message)
        return (msgs.filter { !isCut($0.from, $0.to) }, msgs.filter { isCut($0.from, $0.to) })
    }
}

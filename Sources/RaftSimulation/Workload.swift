import RaftConsensus

/// Clients issuing read / write / compare-and-set operations on a few registers, recording
/// a history for the linearizability checker. Each operation is submitted exactly once (no
/// retries), so its fate is one of: response seen, definitely not applied (dropped or its log
/// slot went to another entry), or unknown (timeout, crash, snapshot skipped it).
struct Workload {
    struct Pending {
        var opID: UInt64
        var key: Int
        var input: HistoryOperation.Input
        var call: Int
        var node: MemberID
        var deadline: Int
        /// Log position for writes and CAS.
        var slot: (LogIndex, Term)?
        /// Read: context sent and index received.
        var readIndex: LogIndex?
    }

    struct Client {
        var pending: Pending?
        var knownLeader: MemberID = .none
        var nextAt = 0
    }

    var clients: [Client]
    let keys: Int
    var history: [HistoryOperation] = []
    var nextOpID: UInt64 = 1
    var nextValue = 1

    init(clients: Int, keys: Int) {
        self.clients = Array(repeating: Client(), count: clients)
        self.keys = keys
    }

    private mutating func complete(_ c: Int, output: HistoryOperation.Output, sim: Simulator) {
        guard let p = clients[c].pending else { return }
        history.append(
            HistoryOperation(client: c, key: p.key, input: p.input, output: output, call: p.call, ret: sim.now))
        clients[c].pending = nil
        clients[c].nextAt = sim.tickCount + 1 + sim.rng.next(below: 3)
    }

    /// The op definitely had no effect: it leaves no trace in the history.
    private mutating func abandon(_ c: Int, sim: Simulator) {
        clients[c].pending = nil
        clients[c].nextAt = sim.tickCount + 1
    }

    mutating func issue(sim: Simulator) {
        let live = sim.nodes.filter(\.isUp)
        guard !live.isEmpty else { return }
        for c in 0..<clients.count where clients[c].pending == nil && clients[c].nextAt <= sim.tickCount {
            var target = live[sim.rng.next(below: live.count)]
            if let l = sim.node(clients[c].knownLeader), l.isUp, !sim.rng.chance(1, in: 5) { target = l }
            guard let rn = target.node else { continue }
            let key = sim.rng.next(below: keys)
            let opID = nextOpID
            nextOpID += 1
            let input: HistoryOperation.Input
            switch sim.rng.next(below: 3) {
            case 0: input = .read
            case 1:
                input = .write(nextValue)
                nextValue += 1
            default:
                // Expect a recent value so that CAS succeeds reasonably often.
                input = .cas(expected: max(0, nextValue - 1 - sim.rng.next(below: 3)), new: nextValue)
                nextValue += 1
            }
            var p = Pending(
                opID: opID, key: key, input: input, call: sim.now, node: target.id,
                deadline: sim.tickCount + sim.config.clientTimeoutTicks)
            let outcome: ProposalOutcome
            switch input {
            case .read:
                outcome = rn.readIndex(context: Workload.context(opID))
            case .write(let v):
                outcome = rn.propose(RegisterCommand(kind: .write, key: key, opID: opID, a: v, b: 0).encode())
            case .cas(let e, let n):
                outcome = rn.propose(RegisterCommand(kind: .cas, key: key, opID: opID, a: e, b: n).encode())
            }
            switch outcome {
            case .appended(let index, let term):
                p.slot = (index, term)
                clients[c].pending = p
            case .accepted, .forwarded:
                clients[c].pending = p
            case .dropped(let reason):
                if case .notLeader(let l) = reason { clients[c].knownLeader = l }
                clients[c].nextAt = sim.tickCount + 1
            }
        }
    }

    static func context(_ opID: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: opID >> UInt64(8 * $0)) }
    }

    /// Matches what node `n` just applied / learned against pending operations.
    mutating func observe(_ n: SimNode, sim: Simulator) {
        let results = n.appliedResults
        let reads = n.readStates
        let snapAt = n.installedSnapshotAt
        n.appliedResults = []
        n.readStates = []
        n.installedSnapshotAt = nil
        for c in 0..<clients.count {
            guard let p = clients[c].pending, p.node == n.id else { continue }
            if let (index, term) = p.slot {
                if let r = results.first(where: { $0.0 == index }) {
                    if r.1 == term && r.2 == p.opID {
                        complete(c, output: r.3 == .ok ? .ok : .casFailed, sim: sim)
                    } else {
                        // Another entry won our slot: ours can never commit.
                        abandon(c, sim: sim)
                    }
                } else if let s = snapAt, s >= index {
                    complete(c, output: .unknown, sim: sim)
                }
            } else {
                if p.readIndex == nil, let rs = reads.first(where: { $0.context == Workload.context(p.opID) }) {
                    clients[c].pending?.readIndex = rs.index
                }
                if let ri = clients[c].pending?.readIndex, n.applied >= ri {
                    complete(c, output: .value(n.registers[p.key]), sim: sim)
                }
            }
        }
    }

    mutating func nodeCrashed(_ id: MemberID, sim: Simulator) {
        for c in 0..<clients.count where clients[c].pending?.node == id {
            failUnknown(c, sim: sim)
        }
    }

    /// Unknown outcome: writes may have happened (kept with infinite return), reads vanish.
    private mutating func failUnknown(_ c: Int, sim: Simulator) {
        guard let p = clients[c].pending else { return }
        if case .read = p.input { abandon(c, sim: sim) } else { complete(c, output: .unknown, sim: sim) }
    }

    mutating func expire(sim: Simulator) {
        for c in 0..<clients.count {
            guard let p = clients[c].pending else { continue }
            // A read whose index is known completes as soon as the node applies that far.
            if p.readIndex != nil, let n = sim.node(p.node) { observe(n, sim: sim) }
            if clients[c].pending != nil && sim.tickCount >= p.deadline { failUnknown(c, sim: sim) }
        }
    }

    mutating func finish(sim: Simulator) {
        for c in 0..<clients.count { failUnknown(c, sim: sim) }
    }
}

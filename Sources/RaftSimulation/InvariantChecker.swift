import RaftConsensus

/// Safety invariants checked while the simulation runs.
struct InvariantChecker {
    /// Leader seen for each term (Election Safety).
    var leaderOfTerm: [Term: MemberID] = [:]
    /// The entry applied at each index by whichever replica applied it first (State Machine
    /// Safety: nobody may apply a different one).
    var appliedEntries: [LogIndex: Entry] = [:]
    var maxApplied: LogIndex = .zero
    /// Which members applied each sentinel (liveness probe).
    var sentinelApplied: [UInt64: [MemberID]] = [:]

    mutating func checkLeaderUnique(_ id: MemberID, term: Term, sim: Simulator) {
        if let other = leaderOfTerm[term], other != id {
            sim.fail("two leaders in term \(term): \(other) and \(id)")
        }
        leaderOfTerm[term] = id
    }

    mutating func applied(_ e: Entry, by id: MemberID, sim: Simulator) {
        if let prior = appliedEntries[e.index] {
            if prior != e { sim.fail("\(id) applied \(e) at \(e.index) but another replica applied \(prior)") }
        } else {
            appliedEntries[e.index] = e
            sim.stats.committed += 1
        }
        if e.index > maxApplied { maxApplied = e.index }
        if case .normal(let bytes) = e.payload, let cmd = RegisterCommand.decode(bytes), cmd.kind == .sentinel {
            sentinelApplied[cmd.opID, default: []].append(id)
        }
    }

    /// Leader Completeness: a new leader holds every entry any replica has applied.
    func checkNewLeader(_ n: SimNode, sim: Simulator) {
        guard let rn = n.node else { return }
        let st = rn.status
        if st.lastIndex < maxApplied {
            sim.fail("new leader \(n.id) (term \(st.term)) has last index \(st.lastIndex) < applied \(maxApplied)")
            return
        }
        let lo = max(st.firstIndex, LogIndex(1))
        guard lo <= maxApplied else { return }
        let ents = rn.entries(lo, maxApplied.next)
        for e in ents where appliedEntries[e.index] != nil && appliedEntries[e.index] != e {
            sim.fail("new leader \(n.id) (term \(st.term)) has \(e) but \(appliedEntries[e.index]!) was applied")
            return
        }
    }

    /// Log Matching and "committed entries are never lost", across all live replicas.
    /// `window` limits the check to the last `window` entries of each log (cheap enough to
    /// run after every delivery round); nil checks the whole retained logs.
    func checkLogs(sim: Simulator, window: Int? = nil) {
        let live = sim.nodes.compactMap { n -> (MemberID, RawNode)? in n.node.map { (n.id, $0) } }
        var logs: [(MemberID, LogIndex, [Entry])] = []
        for (id, rn) in live {
            let st = rn.logBounds
            var lo = st.first
            if let w = window, st.last.rawValue > UInt64(w), LogIndex(st.last.rawValue - UInt64(w)) > lo {
                lo = LogIndex(st.last.rawValue - UInt64(w))
            }
            let ents = rn.entries(lo, st.last.next)
            // Everything this replica considers committed must equal what was applied.
            for e in ents where e.index <= st.commit {
                if let a = appliedEntries[e.index], a != e {
                    sim.fail("\(id) has committed \(e) but \(a) was applied at that index")
                    return
                }
            }
            logs.append((id, lo, ents))
        }
        for i in 0..<logs.count {
            for j in (i + 1)..<max(i + 1, logs.count) where j < logs.count {
                let (a, b) = (logs[i], logs[j])
                let lo = max(a.1, b.1)
                let hiA = LogIndex(a.1.rawValue + UInt64(a.2.count)), hiB = LogIndex(b.1.rawValue + UInt64(b.2.count))
                let hi = min(hiA, hiB)  // exclusive
                guard lo < hi else { continue }
                var matched = false
                var k = hi.previous
                while true {
                    let ea = a.2[Int(k.rawValue - a.1.rawValue)], eb = b.2[Int(k.rawValue - b.1.rawValue)]
                    if matched {
                        if ea != eb {
                            sim.fail("log matching violated between \(a.0) and \(b.0) at \(k): \(ea) vs \(eb)"); return
                        }
                    } else if ea.term == eb.term {
                        if ea != eb { sim.fail("same index/term, different entries at \(k) on \(a.0),\(b.0)"); return }
                        matched = true
                    }
                    if k == lo { break }
                    k = k.previous
                }
            }
        }
    }
}

import RaftConsensus

/// A hand-driven cluster for golden interaction scripts: nothing happens unless a command
/// says so (ticks, Ready processing and message delivery are explicit).
final class InteractionEnv {
    struct Member {
        var storage: MemoryStableLog
        var node: RawNode
        var config: RaftConfig
        var applied: [Entry] = []
        var confState: ConfState
    }

    var members: [MemberID: Member] = [:]
    /// Messages sent and not yet delivered or dropped, in send order.
    var queue: [Message] = []
    /// Directed cut links.
    var cut: Set<[UInt64]> = []
    var output: [String] = []

    var ids: [MemberID] { members.keys.sorted() }

    func out(_ s: String) {
        output.append(contentsOf: s.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
    }

    // MARK: - Commands

    func run(_ line: String) -> String {
        output = []
        let words = line.split(separator: " ").map(String.init)
        guard let cmd = words.first else { return "" }
        let args = Array(words.dropFirst())
        let kv = Dictionary(
            args.compactMap { a -> (String, String)? in
                let p = a.split(separator: "=", maxSplits: 1).map(String.init)
                return p.count == 2 ? (p[0], p[1]) : nil
            }, uniquingKeysWith: { $1 })
        let positional = args.filter { !$0.contains("=") }
        let nums = positional.compactMap { UInt64($0) }.map { MemberID($0) }
        switch cmd {
        case "add-nodes": addNodes(count: Int(positional[0])!, kv)
        case "campaign": members[nums[0]]!.node.campaign()
        case "tick":
            let n = Int(kv["n"] ?? "1")!
            let targets = positional.first == "all" ? ids : nums
            for _ in 0..<n { for id in targets { members[id]!.node.tick() } }
        case "process-ready": for id in targetsOrAll(positional, nums) { processReady(id) }
        case "deliver-msgs": deliver(to: targetsOrAll(positional, nums))
        case "drop-msgs":
            let targets = Set(targetsOrAll(positional, nums))
            for m in queue where targets.contains(m.to) { out("dropped: \(m)") }
            queue.removeAll { targets.contains($0.to) }
        case "partition":
            // partition 1 | 2 3  → cut every link across the bar, both directions.
            let bar = positional.firstIndex(of: "|")!
            let a = positional[..<bar].compactMap(UInt64.init), b = positional[(bar + 1)...].compactMap(UInt64.init)
            for x in a { for y in b { cut.insert([x, y]); cut.insert([y, x]) } }
        case "cut":  // one-way: cut 1 2 stops 1→2 only
            cut.insert([nums[0].rawValue, nums[1].rawValue])
        case "heal": cut = []
        case "run-ticks":
            // Ticks every member n times, fully stabilizing after each tick, silently.
            let n = Int(kv["n"] ?? "1")!
            let saved = output
            for _ in 0..<n {
                for id in ids { members[id]!.node.tick() }
                stabilize(ids)
            }
            output = saved
        case "stabilize": stabilize(targetsOrAll(positional, nums))
        case "propose":
            out("\(members[nums[0]]!.node.propose(Array(positional[1].utf8)))")
        case "propose-batch":
            let n = Int(kv["n"] ?? "1")!, size = Int(kv["size"] ?? "1")!
            out(
                "\(members[nums[0]]!.node.propose(batch: Array(repeating: Array(repeating: UInt8(ascii: "x"), count: size), count: n)))"
            )
        case "propose-conf-change": proposeConfChange(nums[0], Array(positional.dropFirst()))
        case "transfer-leadership": out("\(members[nums[0]]!.node.transferLeadership(to: nums[1]))")
        case "read-index": out("\(members[nums[0]]!.node.readIndex(context: Array(positional[1].utf8)))")
        case "status": for id in targetsOrAll(positional, nums) { out("\(members[id]!.node.status)") }
        case "raft-state":
            for id in ids {
                let s = members[id]!.node.status
                out("\(id): \(s.role) term=\(s.term) lead=\(s.lead) commit=\(s.commit)\(s.quiesced ? " quiesced" : "")")
            }
        case "log":
            let m = members[nums[0]]!
            let ents = m.node.entries(m.storage.firstIndex, m.node.status.lastIndex.next)
            out(ents.isEmpty ? "(empty)" : ents.map(\.description).joined(separator: "\n"))
        case "compact":
            // compact <id> <index>: snapshot at the applied index, drop entries ≤ index.
            let m = members[nums[0]]!
            let upTo = LogIndex(nums[1].rawValue)
            m.storage.createSnapshot(at: upTo, confState: m.confState, data: Array("snap@\(upTo)".utf8))
            m.storage.compact(through: upTo)
            out("first index now \(m.storage.firstIndex)")
        case "restart":
            // Lose everything not persisted and start over from storage.
            var m = members[nums[0]]!
            var cfg = m.config
            cfg.applied = m.storage.latestSnapshot.metadata.index
            m.node = RawNode(config: cfg, log: m.storage)
            members[nums[0]] = m
        case "quiesce": out("quiesced=\(members[nums[0]]!.node.quiesce())")
        case "quiescable": out("\(members[nums[0]]!.node.isQuiescable)")
        case "wake": members[nums[0]]!.node.wake()
        case "report-unreachable": members[nums[0]]!.node.reportUnreachable(nums[1])
        case "report-snapshot": members[nums[0]]!.node.reportSnapshot(nums[1], succeeded: kv["ok"] != "false")
        case "progress":
            let p = members[nums[0]]!.node.progress(of: nums[1])
            out(p.map(\.description) ?? "none")
        default:
            out("unknown command \(cmd)")
        }
        return output.isEmpty ? "ok" : output.joined(separator: "\n")
    }

    private func targetsOrAll(_ positional: [String], _ nums: [MemberID]) -> [MemberID] {
        nums.isEmpty ? ids : nums
    }

    private func addNodes(count: Int, _ kv: [String: String]) {
        func list(_ key: String) -> [MemberID] {
            (kv[key] ?? "").split(separator: ",").compactMap { UInt64($0) }.map { MemberID($0) }
        }
        let conf = ConfState(voters: list("voters"), learners: list("learners"))
        let start = (ids.last?.rawValue ?? 0) + 1
        for raw in start..<(start + UInt64(count)) {
            var cfg = RaftConfig(id: MemberID(raw))
            cfg.preVote = kv["prevote"] == "true"
            cfg.checkQuorum = kv["checkquorum"] == "true"
            cfg.electionTick = Int(kv["election"] ?? "10")!
            cfg.heartbeatTick = Int(kv["heartbeat"] ?? "1")!
            cfg.maxInflightMsgs = Int(kv["max-inflight"] ?? "256")!
            cfg.maxInflightBytes = Int(kv["max-inflight-bytes"] ?? "0")!
            cfg.maxSizePerMsg = Int(kv["max-size"] ?? "1048576")!
            cfg.maxUncommittedEntriesSize = Int(kv["max-uncommitted"] ?? "0")!
            cfg.readOnlyOption = kv["read-only"] == "lease" ? .leaseBased : .safe
            cfg.forwardProposals = kv["forward"] == "true"
            cfg.seed = 7
            let storage = MemoryStableLog(confState: conf)
            members[MemberID(raw)] = Member(
                storage: storage, node: RawNode(config: cfg, log: storage),
                config: cfg, confState: conf)
        }
    }

    private func proposeConfChange(_ id: MemberID, _ words: [String]) {
        var changes: [ConfChangeSingle] = []
        var transition = ConfChangeTransition.auto
        for w in words {
            if w == "joint" { transition = .jointImplicit; continue }
            if w == "joint-explicit" { transition = .jointExplicit; continue }
            if w == "leave" { continue }
            let who = MemberID(UInt64(w.dropFirst())!)
            switch w.first {
            case "v": changes.append(.addVoter(who))
            case "l": changes.append(.addLearner(who))
            case "r": changes.append(.remove(who))
            default: out("bad change \(w)")
            }
        }
        out("\(members[id]!.node.proposeConfChange(ConfChange(changes, transition: transition)))")
    }

    /// Handles one Ready of `id` following the contract; returns false if there was none.
    @discardableResult
    func processReady(_ id: MemberID) -> Bool {
        guard var m = members[id], m.node.hasReady else { return false }
        let rd = m.node.ready()
        out("> \(id) handling Ready")
        out(rd.description.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        queue += rd.messages
        if let s = rd.snapshot {
            m.storage.applySnapshot(s)
            m.confState = s.metadata.confState
        }
        m.storage.append(rd.entries)
        if let hs = rd.hardState { m.storage.setHardState(hs) }
        queue += rd.messagesAfterPersist
        for e in rd.committedEntries {
            if case .confChange(let cc) = e.payload {
                m.confState = m.node.applyConfChange(cc)
                out("  applied conf change \(cc): \(m.confState)")
            }
            m.applied.append(e)
        }
        m.node.advance(rd)
        members[id] = m
        return true
    }

    func deliver(to targets: [MemberID]) {
        let t = Set(targets)
        let batch = queue.filter { t.contains($0.to) }
        queue.removeAll { t.contains($0.to) }
        for msg in batch {
            if cut.contains([msg.from.rawValue, msg.to.rawValue]) {
                out("dropped: \(msg)")
                continue
            }
            guard let target = members[msg.to] else {
                out("dropped (no such member): \(msg)")
                continue
            }
            out("deliver: \(msg)")
            target.node.step(msg)
        }
    }

    private func stabilize(_ targets: [MemberID]) {
        var rounds = 0
        while true {
            var any = false
            for id in targets where processReady(id) { any = true }
            let pending = queue.contains { targets.contains($0.to) }
            if pending {
                deliver(to: targets)
                any = true
            }
            rounds += 1
            if !any || rounds > 100 { break }
        }
    }
}

// ConsensusBench: throughput of the pure consensus core. Three members in one process, no
// I/O, no threads: "persisting" is an append to MemoryStableLog and "sending" is a direct
// `step` call. The leader proposes batches of 256-byte entries; we count entries committed
// and applied on all three members per second of wall time (one core).
import RaftConsensus

#if canImport(Glibc)
    import Glibc
#endif

@MainActor
func runBenchmark() {
    let payloadSize = 256
    let batchSize = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 256
    let totalEntries = 2_000_000
    /// Proposals outstanding before we wait for commits (keeps the pipeline full but bounded).
    let maxUncommittedBatches = 8

    let ids: [MemberID] = [1, 2, 3]
    var storages: [MemoryStableLog] = []
    var nodes: [RawNode] = []
    for id in ids {
        let s = MemoryStableLog(confState: ConfState(voters: ids))
        var cfg = RaftConfig(id: id)
        cfg.maxSizePerMsg = 1 << 20
        cfg.maxInflightMsgs = 64
        cfg.seed = 1
        storages.append(s)
        nodes.append(RawNode(config: cfg, log: s))
    }

    var inbox: [Message] = []
    var appliedCount = [0, 0, 0]
    var appliedIndex = [LogIndex.zero, .zero, .zero]

    @inline(__always) func pump() -> Bool {
        var did = false
        for i in 0..<nodes.count {
            let n = nodes[i]
            while n.hasReady {
                did = true
                let rd = n.ready()
                inbox.append(contentsOf: rd.messages)
                if let snap = rd.snapshot { storages[i].applySnapshot(snap) }
                storages[i].append(rd.entries)
                if let hs = rd.hardState { storages[i].setHardState(hs) }
                inbox.append(contentsOf: rd.messagesAfterPersist)
                if let last = rd.committedEntries.last {
                    appliedCount[i] += rd.committedEntries.count
                    appliedIndex[i] = last.index
                }
                n.advance(rd)
            }
        }
        if !inbox.isEmpty {
            did = true
            let batch = inbox
            inbox.removeAll(keepingCapacity: true)
            for m in batch { nodes[Int(m.to.rawValue) - 1].step(m) }
        }
        return did
    }

    // Elect node 1.
    nodes[0].campaign()
    while pump() {}
    precondition(nodes[0].status.role == .leader, "bootstrap election failed")

    let payload = [UInt8](repeating: 0xAB, count: payloadSize)
    let batch = [[UInt8]](repeating: payload, count: batchSize)
    let base = appliedCount[0]
    var proposed = 0
    var lastCompact = LogIndex.zero

    func peakRSS() -> Int {
        #if canImport(Glibc)
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Int(usage.ru_maxrss) * 1024
        #else
            return 0
        #endif
    }

    let rssBefore = peakRSS()
    let clock = ContinuousClock()
    let start = clock.now
    while appliedCount.min()! - base < totalEntries {
        while proposed < totalEntries && proposed - (appliedCount[0] - base) < maxUncommittedBatches * batchSize {
            guard case .appended = nodes[0].propose(batch: batch) else { fatalError("proposal dropped") }
            proposed += batchSize
        }
        _ = pump()
        // Bound memory like a real deployment would: snapshot and compact applied prefixes.
        let minApplied = appliedIndex.min()!
        if minApplied.rawValue > lastCompact.rawValue + 100_000 {
            for (i, s) in storages.enumerated() {
                s.createSnapshot(at: appliedIndex[i], confState: nodes[i].confState, data: [])
                s.compact(through: minApplied)
            }
            lastCompact = minApplied
        }
    }
    let elapsed = clock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let committed = appliedCount[0] - base
    let rssAfter = peakRSS()
    print("ConsensusBench: 3 members, in-memory, \(payloadSize) B entries, batches of \(batchSize)")
    print("  committed+applied on all members: \(committed) entries in \((seconds * 1000).rounded() / 1000) s")
    print("  throughput: \(Int(Double(committed) / seconds)) committed entries/s (single thread)")
    print(
        "  peak RSS before/after: \(rssBefore / 1024) KiB / \(rssAfter / 1024) KiB "
            + "(allocations per proposal are not measured: no cheap allocation counter without hooking malloc)")

}

runBenchmark()

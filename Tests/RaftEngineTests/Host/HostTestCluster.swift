import Foundation
import RaftConsensus

@testable import RaftEngine

/// The tests' cluster: the shared `LocalCluster` with recording state machines, fast
/// ticks and small WAL segments.
typealias HostTestCluster = LocalCluster<RecordingStateMachine>

extension LocalCluster where Machine == RecordingStateMachine {
    convenience init(nodes: Int = 3, options: NodeHost.Options? = nil) throws {
        var c = Configuration()
        c.nodes = nodes
        c.options = options ?? Self.testOptions()
        c.walOptions.segmentSize = 8 << 20
        c.walOptions.maxBatchBytes = 2 << 20
        c.walOptions.maxQueuedBytes = 32 << 20
        try self.init(c)
    }

    static func testOptions() -> NodeHost.Options {
        var o = NodeHost.Options()
        o.workers = 2
        o.applyWorkers = 1
        o.tickMilliseconds = 10
        o.electionTicks = 10
        o.heartbeatTicks = 1
        o.livenessIntervalTicks = 2
        // 300 ms: a node of a test cluster shares 2 cores with two other nodes and the other
        // suites running in parallel; 100 ms of silence happens while it is only busy,
        // and a false death makes the groups it led campaign (see docs/DECISIONS.md).
        o.livenessTimeoutTicks = 30
        o.quiesceAfterIdleTicks = 3
        o.dormantAfterQuiescedTicks = 0
        o.requestTimeoutTicks = 300
        o.maxProposalBytes = 1 << 20
        return o
    }

    /// The options the next `start` uses.
    var options: NodeHost.Options {
        get { configuration.options }
        set { configuration.options = newValue }
    }

    /// Every awake replica of node `i`, described (printed when a wait for quiescence fails).
    func describeAwake(_ i: Int) async -> [String] {
        guard let host = hosts[i] else { return [] }
        var lines: [String] = []
        for w in host.workers {
            let part: [String] = await withCheckedContinuation { continuation in
                let ok = w.offer(
                    .call { shard in
                        let d = shard.awake.map { r in
                            "node \(i) \(r.key) \(r.residency) lastActivity=\(r.lastActivityTick) now=\(shard.currentTick) pending=\(r.pendingReady != nil) requests=\(r.hasRequests) applyJobs=\(r.applyJobsInFlight) down=\(shard.downNodes.sorted()) \(r.node.map { "\($0.status)" } ?? "dormant")"
                        }
                        continuation.resume(returning: d)
                    })
                if !ok { continuation.resume(returning: ["worker inbox full"]) }
            }
            lines += part
        }
        return lines
    }
}

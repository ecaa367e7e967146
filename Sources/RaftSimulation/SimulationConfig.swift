import RaftConsensus

/// Knobs of one simulated run. Probabilities are per mille (‰) per opportunity.
public struct SimulationConfig: Sendable {
    /// Number of members (all voters at start).
    public var members = 3
    /// Ticks with faults injected.
    public var faultTicks = 300
    /// Ticks after healing within which a leader must emerge and a proposal must commit.
    public var livenessBoundTicks = 200
    /// Concurrent clients of the CAS register workload.
    public var clients = 3
    /// Independent registers.
    public var keys = 2
    /// Client gives up (outcome unknown) after this many ticks.
    public var clientTimeoutTicks = 40
    public var dropPerMille = 50
    public var duplicatePerMille = 20
    /// Max extra delivery delay in sub-steps (delay and reordering).
    public var maxDelay = 3
    public var partitionPerMille = 15
    public var healPerMille = 40
    /// Isolate the current leader from everyone (stale-leader scenarios).
    public var isolateLeaderPerMille = 8
    public var crashPerMille = 4
    public var restartPerMille = 60
    /// Crash inside Ready handling, after the pre-persist messages were sent.
    public var crashMidReadyPerMille = 3
    public var confChangePerMille = 25
    public var transferPerMille = 6
    public var quiescePerMille = 20
    public var snapshotPerMille = 10
    public var preVote = true
    public var checkQuorum = true
    /// Run the linearizability checker at the end.
    public var checkLinearizability = true
    /// Record every delivered message in the trace (set automatically when replaying a failure).
    public var traceMessages = false
    /// Keep this many trace lines (the tail is printed on failure).
    public var traceLimit = 400
    /// Max entries per append message, expressed in bytes (small to exercise pipelining).
    public var maxSizePerMsg = 64
    public var maxInflightMsgs = 4

    public init() {}

    /// A five-member variant.
    public static var fiveMembers: SimulationConfig {
        var c = SimulationConfig()
        c.members = 5
        return c
    }
}

/// Outcome of one simulated run.
public struct SimulationResult: Sendable, CustomStringConvertible {
    public var seed: UInt64
    /// Nil when every invariant held.
    public var failure: String?
    /// The last trace lines (everything recorded if the run was short).
    public var trace: [String]
    public var committedEntries: Int
    public var completedOps: Int
    public var unknownOps: Int
    public var leaderChanges: Int
    public var snapshotsInstalled: Int
    public var confChangesApplied: Int
    /// Fault and event counts, sorted by name.
    public var events: [(String, Int)] = []

    public var passed: Bool { failure == nil }

    /// One-line summary; on failure followed by the reproduction hint and the trace tail.
    public var description: String {
        let summary =
            "seed=\(seed) committed=\(committedEntries) ops=\(completedOps) unknown=\(unknownOps) "
            + "leaderChanges=\(leaderChanges) snapshots=\(snapshotsInstalled) confChanges=\(confChangesApplied) "
            + events.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        guard let f = failure else { return "PASS " + summary }
        return "FAIL " + summary
            + "\n  failure: \(f)\n  reproduce: Simulator.run(seed: \(seed), config: ...)\n  trace (tail):\n"
            + trace.map { "    " + $0 }.joined(separator: "\n")
    }
}

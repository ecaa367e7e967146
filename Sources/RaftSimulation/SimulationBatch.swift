/// Runs consecutive seeds, for a `raftd simulate --seeds N --seed S` style front end.
public enum SimulationBatch {
    /// Runs `count` seeds starting at `first`. Returns every failing result plus totals.
    public static func run(
        first: UInt64, count: Int, config: SimulationConfig = SimulationConfig()
    )
        -> (failures: [SimulationResult], seeds: Int, committedEntries: Int, completedOps: Int)
    {
        var failures: [SimulationResult] = []
        var committed = 0, ops = 0
        for i in 0..<count {
            let r = Simulator.run(seed: first &+ UInt64(i), config: config)
            committed += r.committedEntries
            ops += r.completedOps
            if !r.passed { failures.append(r) }
        }
        return (failures, count, committed, ops)
    }
}

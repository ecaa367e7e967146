import ArgumentParser
import RaftSimulation
import RaftTesting

/// `raftd simulate`: runs the deterministic consensus simulator over a range of seeds.
///
/// `--seeds N --seed S` runs seeds S ..< S+N and exits non-zero on any failure, printing
/// each failing seed with its trace; `--seed S` alone runs that one seed and prints its
/// trace, for reproducing a failure.
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the seeded Raft simulator (partitions, loss, reordering, crashes, conf changes).",
        discussion: "A failure prints its seed; `raftd simulate --seed S` replays it with a full trace."
    )

    @Option(help: "How many consecutive seeds to run (default 1 with --seed, else 100).")
    var seeds: Int?

    @Option(help: "The first seed.")
    var seed: UInt64?

    @Option(help: "Members per group: 3 or 5.")
    var members: Int = 3

    @Flag(
        help:
            "Run the multi-group host simulation instead (3 node hosts x 24 groups with real WALs: crashes, partitions, loss, refused and half-durable WAL units, merged ticks, lease and ReadIndex reads)."
    )
    var host = false

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func validate() throws {
        guard members == 3 || members == 5 else { throw ValidationError("--members must be 3 or 5") }
        if let seeds, seeds < 1 || seeds > 10_000_000 { throw ValidationError("--seeds must be 1...10000000") }
    }

    func run() throws {
        if host { return try runHost() }
        let first = seed ?? 1
        let count = seeds ?? (seed == nil ? 100 : 1)
        let single = seed != nil && seeds == nil
        var config = SimulationConfig()
        config.members = members
        config.traceMessages = single
        var failures: [SimulationResult] = []
        var committed = 0
        for offset in 0..<count {
            let result = Simulator.run(seed: first &+ UInt64(offset), config: config)
            committed += result.committedEntries
            if !result.passed { failures.append(result) }
            if single {
                if format == .text {
                    print(result.trace.joined(separator: "\n"))
                }
            }
            if format == .text && !single && (offset + 1) % 100 == 0 {
                print("… \(offset + 1)/\(count) seeds, \(failures.count) failed")
            }
        }
        switch format {
        case .text:
            for failure in failures { print(failure) }
            print(
                "\(count - failures.count) passed, \(failures.count) failed (seeds \(first)..<\(first &+ UInt64(count)), \(members) members, \(committed) entries committed)"
            )
        case .json:
            let seedsFailed = failures.map { "\($0.seed)" }.joined(separator: ",")
            print(
                "{\"seeds\":\(count),\"first\":\(first),\"members\":\(members),\"passed\":\(count - failures.count),\"failed\":\(failures.count),\"failedSeeds\":[\(seedsFailed)],\"committed\":\(committed)}"
            )
        }
        if !failures.isEmpty { throw ExitCode(1) }
    }

    /// The host simulation: `--seed S` replays one seed (a failure prints its replicas and
    /// the trace's tail).
    private func runHost() throws {
        let first = seed ?? 0x5EED_0000
        let count = seeds ?? (seed == nil ? 6 : 1)
        var failures: [String] = []
        var acked = 0
        for offset in 0..<count {
            let s = first &+ UInt64(offset)
            let sim = try HostSimulator(seed: s)
            if let failure = try sim.run() { failures.append(failure) }
            acked += sim.outcomes.acked.count
            if format == .text {
                print(
                    "seed \(s): \(sim.crashes) crashes, \(sim.partitions) partitions, \(sim.outcomes.acked.count) of \(sim.proposals) proposals acknowledged, \(sim.outcomes.reads) reads, \(sim.overloads) WAL units refused and retried"
                )
            }
        }
        switch format {
        case .text:
            for failure in failures { print(failure) }
            print(
                "host simulation: \(count - failures.count) of \(count) seeds passed (seeds \(first)..<\(first &+ UInt64(count)), \(acked) writes acknowledged)"
            )
        case .json:
            print(
                "{\"host\":true,\"seeds\":\(count),\"first\":\(first),\"passed\":\(count - failures.count),\"failed\":\(failures.count),\"acknowledged\":\(acked)}"
            )
        }
        if !failures.isEmpty { throw ExitCode(1) }
    }
}

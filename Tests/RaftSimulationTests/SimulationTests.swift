import Foundation
import RaftConsensus
import RaftSimulation
import RaftTesting
import Testing

/// Seeds per configuration; `RAFT_SIM_SEEDS=N` raises it, `RAFT_SIM_SEED=S` runs one seed.
private func seedRange(default count: Int, offset: UInt64) -> [UInt64] {
    let env = ProcessInfo.processInfo.environment
    if let one = env["RAFT_SIM_SEED"].flatMap(UInt64.init) { return [one] }
    let n = env["RAFT_SIM_SEEDS"].flatMap(Int.init) ?? count
    return (0..<UInt64(n)).map { $0 + offset }
}

/// A precondition failure inside the core traps the whole process; this handler prints the
/// seed being simulated before the process dies, so even a crash is reproducible.
nonisolated(unsafe) private var crashBanner: [[UInt8]] = [[], []]
nonisolated(unsafe) private var handlerInstalled = false

private func installCrashBanner() {
    if handlerInstalled { return }
    handlerInstalled = true
    for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGABRT] {
        signal(sig) { s in
            for slot in 0..<2 where !crashBanner[slot].isEmpty {
                crashBanner[slot].withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count) }
            }
            signal(s, SIG_DFL)
            raise(s)
        }
    }
}

/// What a range of seeds did.
private struct SeedsOutcome: Sendable {
    var seeds = 0
    var failures: [UInt64] = []
    var committed = 0
}

/// Runs the seeds off the cooperative pool (see `onDedicatedThread`) and checks the outcome.
private func runSeeds(_ seeds: [UInt64], config: SimulationConfig, label: String) async throws {
    let outcome = try await onDedicatedThread("raftd-\(label)") { simulateSeeds(seeds, config: config, label: label) }
    #expect(outcome.failures.isEmpty, "\(label) failing seeds: \(outcome.failures)")
    // The workload must actually exercise the system, or passing means nothing.
    #expect(outcome.committed > outcome.seeds * 20, "\(label): suspiciously little committed")
}

private func simulateSeeds(_ seeds: [UInt64], config: SimulationConfig, label: String) -> SeedsOutcome {
    installCrashBanner()
    let slot = label == "sim5" ? 1 : 0
    var failures: [SimulationResult] = []
    var committed = 0, ops = 0
    var events: [String: Int] = [:]
    for seed in seeds {
        crashBanner[slot] = Array(
            "\n*** [\(label)] process crashed while simulating seed \(seed); reproduce with RAFT_SIM_SEED=\(seed) ***\n"
                .utf8)
        let r = Simulator.run(seed: seed, config: config)
        committed += r.committedEntries
        ops += r.completedOps
        for (k, v) in r.events { events[k, default: 0] += v }
        events["snapshot-installed", default: 0] += r.snapshotsInstalled
        events["leader-change", default: 0] += r.leaderChanges
        events["unknown-outcome-op", default: 0] += r.unknownOps
        if !r.passed {
            failures.append(r)
            print("[\(label)] \(r)")
        }
    }
    crashBanner[slot] = []
    print(
        "[\(label)] \(seeds.count) seeds, \(failures.count) failed, \(committed) entries committed, \(ops) client ops")
    print("[\(label)] events: " + events.keys.sorted().map { "\($0)=\(events[$0]!)" }.joined(separator: " "))
    return SeedsOutcome(seeds: seeds.count, failures: failures.map(\.seed), committed: committed)
}

@Test("Simulation: 3 members, faults, invariants, liveness and linearizability")
func simulateThree() async throws {
    try await runSeeds(seedRange(default: 300, offset: 0), config: SimulationConfig(), label: "sim3")
}

@Test("Simulation: 5 members, faults, invariants, liveness and linearizability")
func simulateFive() async throws {
    try await runSeeds(seedRange(default: 200, offset: 10_000), config: .fiveMembers, label: "sim5")
}

@Test("Simulation: same seed replays identically")
func simulationIsDeterministic() {
    let a = Simulator.run(seed: 42, config: SimulationConfig())
    let b = Simulator.run(seed: 42, config: SimulationConfig())
    #expect(a.description == b.description)
    #expect(a.trace == b.trace)
    let c = Simulator.run(seed: 43, config: SimulationConfig())
    #expect(a.trace != c.trace)
}

@Test("Simulation: 3 members without PreVote and CheckQuorum (deposed leaders linger)")
func simulateWithoutCheckQuorum() async throws {
    var config = SimulationConfig()
    config.preVote = false
    config.checkQuorum = false
    try await runSeeds(seedRange(default: 100, offset: 20_000), config: config, label: "sim3-nocq")
}

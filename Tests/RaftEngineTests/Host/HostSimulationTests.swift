import Foundation
import Testing

@testable import RaftEngine

@Suite("Host: seeded simulation", .serialized)
struct HostSimulationTests {
    static var seeds: [UInt64] {
        let env = ProcessInfo.processInfo.environment
        if let one = env["RAFT_HOST_SIM_SEED"].flatMap(UInt64.init) { return [one] }
        let count = env["RAFT_HOST_SIM_SEEDS"].flatMap(Int.init) ?? 6
        // Seeds that once failed, kept as regressions (a seed replays exactly while the
        // simulator and the host consume randomness the same way):
        // 1592590374: a replica restarted with committed entries it had not applied stayed
        // dormant and never applied them.
        // 1592590586: an idle group left leaderless (its leader died while the others,
        // restarted meanwhile, did not know it) never caught up a replica that missed the
        // last commit; the simulation now touches every group after healing, as clients do.
        let regressions: [UInt64] = env["RAFT_HOST_SIM_SEEDS"] == nil ? [1_592_590_374, 1_592_590_586] : []
        return (0..<UInt64(count)).map { 0x5EED_0000 + $0 } + regressions
    }

    @Test(
        "Host: simulation: crashes, partitions, loss, late, refused and half-durable WAL units, merged ticks keep every group safe; acknowledged writes survive; reads are linearizable"
    )
    func simulate() async throws {
        struct Totals: Sendable {
            var failures: [String] = []
            var crashes = 0
            var partitions = 0
            var acked = 0
            var proposals = 0
            var reads = 0
            var leaseReads = 0
            var overloads = 0
            var largeProposals = 0
            var partialUnits = 0
            var mergedTicks = 0
        }
        let seeds = Self.seeds
        // Off the cooperative pool: a minute of CPU there stalls every async test.
        let t = try await onDedicatedThread("raftd-host-sim") { () throws -> Totals in
            var t = Totals()
            for seed in seeds {
                // Printed first: a consensus precondition stops the process, and this names the seed.
                print("host simulation: seed \(seed) (RAFT_HOST_SIM_SEED=\(seed) reruns it)")
                let sim = try HostSimulator(seed: seed)
                if let failure = try sim.run() { t.failures.append(failure) }
                t.crashes += sim.crashes
                t.partitions += sim.partitions
                t.acked += sim.outcomes.acked.count
                t.proposals += sim.proposals
                t.reads += sim.outcomes.reads
                t.leaseReads += sim.outcomes.leaseReads
                t.overloads += sim.overloads
                t.largeProposals += sim.largeProposals
                t.partialUnits += sim.partialUnits
                t.mergedTicks += sim.mergedTicks
            }
            return t
        }
        let (failures, crashes, partitions, acked, proposals, reads, leaseReads) = (
            t.failures, t.crashes, t.partitions, t.acked, t.proposals, t.reads, t.leaseReads
        )
        let (overloads, largeProposals, partialUnits, mergedTicks) = (
            t.overloads, t.largeProposals, t.partialUnits, t.mergedTicks
        )
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n\n"))")
        // Not vacuous: faults happened and most proposals were acknowledged.
        print(
            "host simulation: \(Self.seeds.count) seeds, \(crashes) crashes, \(partitions) partitions, \(acked) of \(proposals) proposals acknowledged, \(reads) reads (\(leaseReads) from a lease) all linearizable; \(overloads) WAL units refused and retried, \(largeProposals) large proposals, \(partialUnits) units left half-durable by a crash, \(mergedTicks) merged ticks"
        )
        #expect(overloads > 0 && largeProposals > 0 && mergedTicks > 0)
        #expect(crashes >= Self.seeds.count / 2 && partitions >= Self.seeds.count / 2)
        #expect(acked * 3 >= proposals)
        #expect(leaseReads > 0, "no read was served from a lease: the lease path went untested")
    }

    @Test(
        "Host: simulation: membership changes (learners joined on a free node, promoted, swapped in by joint consensus, members removed and retired) during crashes, partitions and loss keep every group safe; acknowledged writes reach every final member"
    )
    func simulateMembership() async throws {
        let env = ProcessInfo.processInfo.environment
        let seeds: [UInt64] =
            env["RAFT_HOST_SIM_SEED"].flatMap(UInt64.init).map { [$0] }
            ?? (0..<UInt64(env["RAFT_HOST_SIM_SEEDS"].flatMap(Int.init) ?? 4)).map { 0x3E3B_0000 + $0 }
        struct Totals: Sendable {
            var failures: [String] = []
            var changes = 0
            var joins = 0
            var retirements = 0
            var crashes = 0
            var acked = 0
        }
        let t = try await onDedicatedThread("raftd-host-sim") { () throws -> Totals in
            var t = Totals()
            for seed in seeds {
                print("host membership simulation: seed \(seed) (RAFT_HOST_SIM_SEED=\(seed) reruns it)")
                var config = HostSimulator.Config()
                config.nodes = 4
                config.initialMembers = 3
                config.groups = 8
                config.membershipPerMille = 40
                let sim = try HostSimulator(seed: seed, config: config)
                if let failure = try sim.run() { t.failures.append(failure) }
                t.changes += sim.membershipChanges
                t.joins += sim.joins
                t.retirements += sim.retirements
                t.crashes += sim.crashes
                t.acked += sim.outcomes.acked.count
            }
            return t
        }
        let (failures, changes, joins, retirements) = (t.failures, t.changes, t.joins, t.retirements)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n\n"))")
        print(
            "host membership simulation: \(seeds.count) seeds, \(changes) changes committed, \(joins) joins, \(retirements) replicas retired, \(t.crashes) crashes, \(t.acked) writes acknowledged"
        )
        #expect(changes >= seeds.count * 4 && joins >= seeds.count && retirements >= seeds.count, "a vacuous run")
    }
}

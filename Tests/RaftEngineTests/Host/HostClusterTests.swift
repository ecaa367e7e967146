import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Host: in-process clusters", .serialized)
struct HostClusterTests {
    @Test("Host: 3 nodes x 1,000 groups: writes to random groups commit and apply in order on every replica")
    func thousandGroups() async throws {
        let cluster = try HostTestCluster()
        defer { cluster.stopAll() }
        try cluster.startAll()
        let keys = try cluster.createGroups(1_000)
        var rng = SplitMix64(seed: 42)
        let plan = (0..<3_000).map { n in (keys[Int(rng.next() % UInt64(keys.count))], Array("w\(n)".utf8)) }
        // 64 writers.
        let acked = try await withThrowingTaskGroup(of: [(PartitionKey, [UInt8], LogIndex)].self) { group in
            for w in 0..<64 {
                group.addTask {
                    var mine: [(PartitionKey, [UInt8], LogIndex)] = []
                    for i in stride(from: w, to: plan.count, by: 64) {
                        let (key, data) = plan[i]
                        mine.append((key, data, try await cluster.write(key, data, within: 60)))
                    }
                    return mine
                }
            }
            var all: [(PartitionKey, [UInt8], LogIndex)] = []
            for try await part in group { all += part }
            return all
        }
        #expect(acked.count == plan.count)
        // Every acknowledged write is applied on every replica at its index, and all
        // replicas of a group applied the same sequence.
        let byKey = Dictionary(grouping: acked, by: { $0.0 })
        try await cluster.waitUntil("every replica applied every acknowledged write", within: 30) {
            for (key, writes) in byKey {
                let last = writes.map(\.2).max()!
                for node in 0..<3 {
                    let sm = cluster.machines.existing(node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
                    guard let sm, sm.appliedIndex >= last else { return false }
                }
            }
            return true
        }
        for (key, writes) in byKey {
            let sequences = (0..<3).map { node in
                cluster.machines.existing(node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))!
            }
            for sm in sequences { #expect(sm.violations.isEmpty, "\(key): \(sm.violations)") }
            let reference = sequences[0].writes
            for sm in sequences.dropFirst() {
                let other = sm.writes
                #expect(other.count == reference.count && zip(other, reference).allSatisfy { $0.index == $1.index && $0.data == $1.data }, "\(key): replicas applied different sequences")
            }
            let applied = Dictionary(uniqueKeysWithValues: reference.map { ($0.index, $0.data) })
            for (_, data, index) in writes { #expect(applied[index] == data, "\(key): write at \(index) missing or different") }
        }
        var walWrites: UInt64 = 0
        for i in 0..<3 { walWrites += await cluster.counters(i).walWrites }
        #expect(walWrites > 0)
    }
}

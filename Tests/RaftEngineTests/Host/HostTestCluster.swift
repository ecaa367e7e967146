import Foundation
import RaftConsensus
import Synchronization

@testable import RaftEngine

/// A state machine that records what it applies and checks the order (test double for a
/// partition). Registered per (node, replica) so a restarted host reopens the same one, as
/// a durable state machine would be.
final class RecordingStateMachine: StateMachine, @unchecked Sendable {
    private struct State {
        var last = LogIndex.zero
        var writes: [(index: LogIndex, data: [UInt8])] = []
        var violations: [String] = []
    }
    private let state = Mutex(State())

    var appliedIndex: LogIndex { state.withLock { $0.last } }
    var writes: [(index: LogIndex, data: [UInt8])] { state.withLock { $0.writes } }
    var violations: [String] { state.withLock { $0.violations } }

    func apply(_ entries: [Entry]) throws(StateMachineError) {
        state.withLock { s in
            for e in entries {
                if e.index != s.last.next { s.violations.append("applied \(e.index) after \(s.last)") }
                s.last = e.index
                if case .normal(let data) = e.payload, !data.isEmpty { s.writes.append((e.index, data)) }
            }
        }
    }
}

final class StateMachineRegistry: Sendable {
    private let machines = Mutex<[String: RecordingStateMachine]>([:])

    func machine(node: Int, replica: ReplicaKey) -> RecordingStateMachine {
        machines.withLock { m in
            let name = "\(node)/\(replica)"
            if let existing = m[name] { return existing }
            let fresh = RecordingStateMachine()
            m[name] = fresh
            return fresh
        }
    }

    func existing(node: Int, replica: ReplicaKey) -> RecordingStateMachine? {
        machines.withLock { $0["\(node)/\(replica)"] }
    }
}

/// Three in-process nodes on an in-memory network, each with one storage (real WAL and
/// metadata store in a temporary directory). Every group has one replica per node: member
/// k + 1 on node k.
final class HostTestCluster: @unchecked Sendable {
    let directory: TemporaryDirectory
    let clusterID = ClusterID.random()
    let nodeIDs: [NodeID]
    let storageNames: [StorageName]
    let map: ClusterMap
    let network = InMemoryNetwork()
    let machines = StateMachineRegistry()
    var options: NodeHost.Options
    private(set) var hosts: [NodeHost?]

    init(nodes: Int = 3, options: NodeHost.Options? = nil) throws {
        directory = try TemporaryDirectory("raftd-host")
        var ids = (0..<nodes).map { _ in NodeID.random() }
        ids.sort()
        nodeIDs = ids
        storageNames = try (0..<nodes).map { try StorageName("s\($0)") }
        var byNode: [NodeID: [StorageName]] = [:]
        for i in 0..<nodes { byNode[ids[i]] = [storageNames[i]] }
        map = try ClusterMap(byNode)
        hosts = Array(repeating: nil, count: nodes)
        self.options = options ?? Self.testOptions()
    }

    static func testOptions() -> NodeHost.Options {
        var o = NodeHost.Options()
        o.workers = 2
        o.applyWorkers = 1
        o.tickMilliseconds = 10
        o.electionTicks = 10
        o.heartbeatTicks = 1
        o.livenessIntervalTicks = 2
        o.livenessTimeoutTicks = 10
        o.quiesceAfterIdleTicks = 3
        o.dormantAfterQuiescedTicks = 0
        o.requestTimeoutTicks = 300
        o.maxProposalBytes = 1 << 20
        return o
    }

    func start(_ i: Int) throws {
        precondition(hosts[i] == nil)
        var wal = SharedLog.Options()
        wal.segmentSize = 8 << 20
        wal.maxBatchBytes = 2 << 20
        wal.maxQueuedBytes = 32 << 20
        let root = directory.file("node\(i)")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let storage = try Storage(
            root: root, clusterID: clusterID, name: storageNames[i], nodeID: nodeIDs[i],
            createIfMissing: true, walOptions: wal)
        let machines = self.machines
        var o = options
        o.seed = UInt64(i + 1) &* 0x1234_5678
        let host = try NodeHost(
            nodeID: nodeIDs[i], cluster: map, storages: [storage], options: o,
            stateMachines: { replica, _, _ in machines.machine(node: i, replica: replica) })
        host.start(transport: network.attach(nodeIDs[i], receiver: host))
        hosts[i] = host
    }

    func startAll() throws { for i in hosts.indices { try start(i) } }

    /// Takes node `i` off the network, then stops it: nothing it does afterwards reaches the
    /// others (an in-process stand-in for a crash; the daemon issue kills real processes).
    func crash(_ i: Int) {
        network.detach(nodeIDs[i])
        hosts[i]?.stop()
        hosts[i] = nil
    }

    func stopAll() {
        for i in hosts.indices { crash(i) }
        directory.remove()
    }

    func key(_ n: Int) -> PartitionKey {
        PartitionKey(authority: storageNames[0], partitionID: try! PartitionID(UInt64(n) + 2))
    }

    /// Creates `count` groups; group n is led first by member (n mod 3) + 1.
    func createGroups(_ count: Int, from first: Int = 0) throws -> [PartitionKey] {
        let keys = (first..<(first + count)).map(key)
        for i in hosts.indices {
            guard let host = hosts[i] else { continue }
            let replicas = hosts.indices.map {
                RouteReplica(member: MemberID(UInt64($0 + 1)), storage: storageNames[$0], role: .voter)
            }
            let specs = keys.enumerated().map { n, key in
                ReplicaSpec(
                    partition: key, member: MemberID(UInt64(i + 1)), storage: storageNames[i], replicas: replicas,
                    campaign: (first + n) % hosts.count == i)
            }
            try host.createReplicas(specs)
        }
        return keys
    }

    /// The node whose replica leads `key` in the highest term, if any.
    func leader(of key: PartitionKey) async -> Int? {
        var best: (node: Int, term: Term)?
        for (i, host) in hosts.enumerated() {
            guard let host, let s = try? await host.status(of: key), s.role == .leader else { continue }
            if best == nil || s.term > best!.term { best = (i, s.term) }
        }
        return best?.node
    }

    /// Proposes at the leader, following NotLeader answers and retrying retryable errors
    /// until `deadline`.
    func write(_ key: PartitionKey, _ data: [UInt8], within seconds: Double = 20) async throws -> LogIndex {
        let deadline = Date().addingTimeInterval(seconds)
        var node = await leader(of: key) ?? 0
        var lastError: HostError?
        while Date() < deadline {
            guard let host = hosts[node] else {
                node = (node + 1) % hosts.count
                continue
            }
            do {
                return try await host.propose(key, data)
            } catch {
                lastError = error
                guard error.isRetryable else { throw error }
                if case .notLeader(_, let leaderNode?) = error, let i = nodeIDs.firstIndex(of: leaderNode) {
                    node = i
                } else {
                    try await Task.sleep(nanoseconds: 5_000_000)
                    node = await leader(of: key) ?? (node + 1) % hosts.count
                }
            }
        }
        throw lastError ?? HostError.timedOut
    }

    /// Waits until `condition` holds, polling, or fails after `seconds`.
    func waitUntil(
        _ what: String, within seconds: Double = 20, _ condition: () async -> Bool
    ) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        throw HostTestFailure("timed out after \(seconds) s waiting until \(what)")
    }

    func counters(_ i: Int) async -> HostCounters { await hosts[i]!.counters() }

    /// Every awake replica of node `i`, described (printed when a wait for quiescence fails).
    func describeAwake(_ i: Int) async -> [String] {
        guard let host = hosts[i] else { return [] }
        var lines: [String] = []
        for w in host.workers {
            let part: [String] = await withCheckedContinuation { continuation in
                let ok = w.offer(
                    .call { shard in
                        let d = shard.awake.map { r in
                            "node \(i) \(r.key) \(r.residency) lastActivity=\(r.lastActivityTick) now=\(shard.now) pending=\(r.pendingReady != nil) requests=\(r.hasRequests) applyJobs=\(r.applyJobsInFlight) down=\(shard.downNodes.sorted()) \(r.node.map { "\($0.status)" } ?? "dormant")"
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

struct HostTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

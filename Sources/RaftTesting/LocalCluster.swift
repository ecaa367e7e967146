import Foundation
import RaftConsensus
import RaftEngine
import Synchronization

/// Several node hosts in one process on an in-memory network, each with its own storage (a
/// real WAL and metadata store on disk): the one in-process cluster that the tests, `raftd
/// demo` and HostBench run on. Every group has one replica per node, member k + 1 on node
/// k. A crashed node is taken off the network first, so nothing it does afterwards reaches
/// the others; its state machines are kept (a restart finds them as durable ones would be).
public final class LocalCluster<Machine: StateMachine>: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var nodes = 3
        /// Where the nodes' storages live; nil: a temporary directory, removed by `stopAll`.
        public var directory: String?
        /// Storage names are this prefix and the node's index.
        public var storagePrefix = "s"
        public var options = NodeHost.Options()
        public var walOptions = SharedLog.Options()
        /// Adjusts the WAL options of one node (fault injection).
        public var walOptionsOfNode: @Sendable (Int, SharedLog.Options) -> SharedLog.Options = { $1 }
        /// Adjusts the host options of one node (mismatched configurations).
        public var optionsOfNode: @Sendable (Int, NodeHost.Options) -> NodeHost.Options = { $1 }
        /// Makes a node's bulk service (attachments) for its host, at every start; nil: none.
        public var bulkService: (@Sendable (_ node: Int, _ host: NodeHost) -> any BulkService)?
        /// Makes a node's snapshot service for its host, at every start; nil: none.
        public var snapshotService:
            (@Sendable (_ node: Int, _ host: NodeHost, _ cluster: ClusterID) -> any SnapshotService)?
        /// Real sockets between the nodes instead of the in-memory network (whose link
        /// controls then do nothing).
        public var tcp = false

        public init() {}
    }

    /// Read at each `start`: a test may change options between starts.
    public var configuration: Configuration
    public let directory: String
    private let ownsDirectory: Bool
    public let clusterID = ClusterID.random()
    public let nodeIDs: [NodeID]
    public let storageNames: [StorageName]
    public let map: ClusterMap
    public let network = InMemoryNetwork()
    /// The nodes' TCP transports when `Configuration.tcp` is set.
    public let tcpNetwork: TCPNetwork?
    private var attached: any ClusterNetwork { tcpNetwork ?? network }
    public let machines: MachineRegistry<Machine>
    public private(set) var hosts: [NodeHost?]
    /// The bulk service of each running node (`Configuration.bulkService`).
    public private(set) var bulkServices: [(any BulkService)?]
    /// The snapshot service of each running node (`Configuration.snapshotService`).
    public private(set) var snapshotServices: [(any SnapshotService)?]

    public init(_ configuration: Configuration, machines: MachineRegistry<Machine>) throws {
        self.configuration = configuration
        if let directory = configuration.directory {
            self.directory = directory
            ownsDirectory = false
        } else {
            self.directory = try TemporaryDirectory("raftd-cluster").path
            ownsDirectory = true
        }
        let n = configuration.nodes
        let ids = (0..<n).map { _ in NodeID.random() }.sorted()
        let names = try (0..<n).map { try StorageName("\(configuration.storagePrefix)\($0)") }
        nodeIDs = ids
        storageNames = names
        map = try ClusterMap(Dictionary(uniqueKeysWithValues: (0..<n).map { (ids[$0], [names[$0]]) }))
        tcpNetwork = configuration.tcp ? TCPNetwork(clusterID: clusterID, nodes: ids) : nil
        hosts = Array(repeating: nil, count: n)
        bulkServices = Array(repeating: nil, count: n)
        snapshotServices = Array(repeating: nil, count: n)
        self.machines = machines
    }

    public var nodeCount: Int { configuration.nodes }

    /// Starts node `i` (opening its storage: WAL recovery, replicas loaded dormant). Returns
    /// the seconds spent opening the storage and building the host.
    public func start(_ i: Int) throws { _ = try startTimed(i) }

    /// `start`, returning the seconds spent opening the storage and building the host.
    @discardableResult
    public func startTimed(_ i: Int) throws -> (storageSeconds: Double, hostSeconds: Double) {
        precondition(hosts[i] == nil, "node \(i) is running")
        let root = "\(directory)/node\(i)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let t0 = Date()
        let storage = try Storage(
            root: root, clusterID: clusterID, name: storageNames[i], nodeID: nodeIDs[i], createIfMissing: true,
            walOptions: configuration.walOptionsOfNode(i, configuration.walOptions))
        let t1 = Date()
        var options = configuration.optionsOfNode(i, configuration.options)
        options.seed = configuration.options.seed ^ (UInt64(i + 1) &* 0x1234_5678)
        let machines = self.machines
        let host = try NodeHost(
            nodeID: nodeIDs[i], cluster: map, storages: [storage], options: options,
            stateMachines: { replica, _, _ in machines.machine(node: i, replica: replica, storage: storage) })
        let t2 = Date()
        let bulk = configuration.bulkService?(i, host)
        let snapshots = configuration.snapshotService?(i, host, clusterID)
        let transport: any Transport
        do {
            transport = try attached.attach(nodeIDs[i], receiver: host)
        } catch {
            // A host is stopped only once started: start it off the network, then stop it.
            host.start(transport: network.attach(nodeIDs[i], receiver: host))
            network.detach(nodeIDs[i])
            host.stop()
            throw error
        }
        host.start(transport: transport, bulk: bulk, snapshots: snapshots)
        hosts[i] = host
        bulkServices[i] = bulk
        snapshotServices[i] = snapshots
        return (t1.timeIntervalSince(t0), t2.timeIntervalSince(t1))
    }

    /// Takes node `i` off the network, then stops it: an in-process stand-in for a crash
    /// (the daemon's tests kill real processes).
    public func crash(_ i: Int) {
        attached.detach(nodeIDs[i])
        hosts[i]?.stop()
        hosts[i] = nil
        bulkServices[i] = nil
        snapshotServices[i] = nil
    }

    /// Stops every node; removes the directory when the cluster made it.
    public func stopAll() {
        for i in hosts.indices { crash(i) }
        if ownsDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// The first partition ID of the groups `createGroups` makes: far above what a
    /// storage's own allocator hands out in a test or benchmark, so partitions minted by
    /// the storage (`PartitionProvisioner`) never collide with them.
    public static var firstPartitionID: UInt64 { 1 << 32 }

    /// The key of the n-th group (authority: the first storage).
    public func key(_ n: Int) -> PartitionKey {
        PartitionKey(authority: storageNames[0], partitionID: try! PartitionID(Self.firstPartitionID + UInt64(n)))
    }

    /// Creates `count` groups with a replica on every running node, in bulk (one metadata
    /// transaction per node per 10,000 groups); group n is led first by member
    /// (n mod nodes) + 1, which campaigns in a paced slot.
    public func createGroups(_ count: Int, from first: Int = 0) throws -> [PartitionKey] {
        let keys = (first..<(first + count)).map(key)
        let replicas = hosts.indices.map {
            RouteReplica(member: MemberID(UInt64($0 + 1)), storage: storageNames[$0], role: .voter)
        }
        for chunk in stride(from: 0, to: count, by: 10_000) {
            for i in hosts.indices {
                guard let host = hosts[i] else { continue }
                let specs = (chunk..<min(count, chunk + 10_000)).map { n in
                    ReplicaSpec(
                        partition: keys[n], member: MemberID(UInt64(i + 1)), storage: storageNames[i],
                        replicas: replicas, campaign: (first + n) % hosts.count == i)
                }
                try host.createReplicas(specs)
            }
        }
        return keys
    }

    /// The node whose replica leads `key` in the highest term, if any.
    public func leader(of key: PartitionKey) async -> Int? {
        var best: (node: Int, term: Term)?
        for (i, host) in hosts.enumerated() {
            guard let host, let s = try? await host.status(of: key), s.role == .leader else { continue }
            if best == nil || s.term > best!.term { best = (i, s.term) }
        }
        return best?.node
    }

    /// Proposes at the leader, following NotLeader answers and retrying retryable errors
    /// until the deadline. At least one attempt is made whatever the clock says: this task
    /// may not run for tens of seconds while synchronous tests hold the cooperative pool,
    /// and a loop that checked the deadline first gave up without trying ("deadline
    /// exceeded" on a fresh clone: the flake of issue 10's three-node test).
    public func write(_ key: PartitionKey, _ data: [UInt8], within seconds: Double = 20) async throws -> LogIndex {
        let deadline = Date().addingTimeInterval(seconds)
        var node = await leader(of: key) ?? 0
        var lastError: HostError?
        var attempts = 0
        while attempts == 0 || Date() < deadline {
            attempts += 1
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

    /// Waits until `condition` holds, polling, or throws after `seconds`.
    public func waitUntil(
        _ what: String, within seconds: Double = 20, _ condition: () async -> Bool
    ) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        // Once more after the deadline: the poller itself may have been starved (it runs on
        // the cooperative pool) while the condition came true.
        if await condition() { return }
        throw LocalClusterError("timed out after \(seconds) s waiting until \(what)")
    }

    public func counters(_ i: Int) async -> HostCounters { await hosts[i]!.counters() }

    /// Counters summed over the running nodes (except `skipped`).
    public func totals(except skipped: Int? = nil) async -> HostCounters {
        var total = HostCounters()
        for (i, host) in hosts.enumerated() where i != skipped {
            if let host { total.add(await host.counters()) }
        }
        return total
    }

    /// fdatasyncs and entries written by every running node's WAL.
    public var walStatistics: (fdatasyncs: UInt64, entries: UInt64) {
        var f: UInt64 = 0
        var e: UInt64 = 0
        for host in hosts {
            for s in host?.walStatistics ?? [] {
                f += s.statistics.fdatasyncs
                e += s.statistics.entries
            }
        }
        return (f, e)
    }
}

extension LocalCluster where Machine == RecordingStateMachine {
    /// A cluster whose replicas record what they apply.
    public convenience init(_ configuration: Configuration) throws {
        try self.init(configuration, machines: MachineRegistry { RecordingStateMachine() })
    }

    /// The state machine of group `key`'s replica on node `i`.
    public func machine(_ i: Int, _ key: PartitionKey) -> RecordingStateMachine {
        machines.machine(node: i, replica: ReplicaKey(partition: key, member: MemberID(UInt64(i + 1))))
    }

    /// Waits until every replica of every group applied as far as the most advanced one.
    public func waitUntilApplied(_ keys: [PartitionKey], within seconds: Double = 60) async throws {
        try await waitUntil("every replica applied everything", within: seconds) {
            keys.allSatisfy { key in
                let applied = hosts.indices.map { machine($0, key).appliedIndex }
                return applied.allSatisfy { $0 == applied[0] }
            }
        }
    }

    /// The agreement check: every replica of every group applied the same entries, in
    /// order, and every acknowledged write is among them. Returns the problems found.
    public func checkAgreement(_ keys: [PartitionKey], acknowledged: [(PartitionKey, [UInt8])]) -> [String] {
        var problems: [String] = []
        for key in keys {
            let replicas = hosts.indices.map { machine($0, key) }
            for (i, r) in replicas.enumerated() {
                if let v = r.violations.first { problems.append("\(key) on node \(i): \(v)") }
            }
            let reference = replicas[0].writes
            for (i, r) in replicas.enumerated().dropFirst() {
                let writes = r.writes
                if writes.count != reference.count
                    || zip(writes, reference).contains(where: { $0.index != $1.index || $0.data != $1.data })
                {
                    problems.append("\(key): node \(i) applied other entries than node 0")
                }
            }
        }
        var byKey: [PartitionKey: [[UInt8]]] = [:]
        for (key, data) in acknowledged { byKey[key, default: []].append(data) }
        for (key, list) in byKey.sorted(by: { $0.key < $1.key }) {
            for i in hosts.indices {
                let applied = Set(machine(i, key).writes.map(\.data))
                for data in list where !applied.contains(data) {
                    problems.append(
                        "\(key): acknowledged write \(String(decoding: data, as: UTF8.self)) missing on node \(i)")
                }
            }
        }
        return problems
    }
}

/// A local cluster operation that did not complete.
public struct LocalClusterError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension LocalCluster {
    /// Writers propose unique entries to random groups for `seconds`, following NotLeader
    /// answers; returns the acknowledged writes.
    public func writeLoad(
        _ keys: [PartitionKey], writers: Int, seconds: Double, tag: String,
        progress: @escaping @Sendable (Int, Double) -> Void
    ) async throws -> [(PartitionKey, [UInt8])] {
        let stopAt = Date().addingTimeInterval(seconds)
        let counter = WriteCounter()
        let start = Date()
        return try await withThrowingTaskGroup(of: [(PartitionKey, [UInt8])].self) { group in
            for w in 0..<writers {
                group.addTask { [self] in
                    var mine: [(PartitionKey, [UInt8])] = []
                    var rng = SystemRandomNumberGenerator()
                    var n = 0
                    var leaders: [PartitionKey: Int] = [:]
                    while Date() < stopAt {
                        let key = keys[Int(rng.next() % UInt64(keys.count))]
                        let data = Array("\(tag)-\(w)-\(n)".utf8)
                        n += 1
                        var node = leaders[key] ?? Int(rng.next() % UInt64(hosts.count))
                        for _ in 0..<20 {
                            guard let host = hosts[node] else {
                                node = (node + 1) % hosts.count
                                continue
                            }
                            do {
                                _ = try await host.propose(key, data)
                                leaders[key] = node
                                mine.append((key, data))
                                counter.value.wrappingAdd(1, ordering: .relaxed)
                                break
                            } catch let error as HostError {
                                guard error.isRetryable else { throw error }
                                if case .notLeader(_, let leaderNode?) = error,
                                    let i = nodeIDs.firstIndex(of: leaderNode)
                                {
                                    node = i
                                } else {
                                    node = (node + 1) % hosts.count
                                    try await Task.sleep(nanoseconds: 5_000_000)
                                }
                            } catch {
                                throw error
                            }
                        }
                    }
                    return mine
                }
            }
            group.addTask {
                while Date() < stopAt {
                    try await Task.sleep(nanoseconds: 1_000_000_000)
                    let n = counter.value.load(ordering: .relaxed)
                    progress(n, Double(n) / Date().timeIntervalSince(start))
                }
                return []
            }
            var all: [(PartitionKey, [UInt8])] = []
            for try await part in group { all += part }
            return all
        }
    }

}

/// Writes committed so far by `writeLoad` (progress output).
final class WriteCounter: Sendable {
    let value = Atomic<Int>(0)
}

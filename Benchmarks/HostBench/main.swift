// HostBench: the node host with three in-process nodes (in-memory transport, real WAL and
// metadata store per node): idle cost of quiesced groups, memory per quiesced and dormant
// replica, write throughput at 1 / 100 / 10,000 active groups against one pwrite +
// fdatasync per write measured in the same run, cold (dormant) versus warm write latency,
// and node restart time. Figures go to docs/BENCHMARKS.md.
//
//   .build/release/HostBench [--scenario all|idle|throughput|restart] [--groups N]
//       [--idle-seconds S] [--seconds S] [--in-flight N] [--active 1,100,10000] [--tick-ms MS]
//       [--workers N] [--dir PATH] [--quick]

import BenchSupport
import CRaftIO
import Foundation
import RaftConsensus
import RaftEngine
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

struct Options {
    var scenario = "all"
    var groups = 10_000
    var idleSeconds = 60.0
    var seconds = 5.0
    var inFlight = 256
    var tickMilliseconds = 100
    var directory = "bench-data/host"
    var entrySize = 256
    var active = [1, 100, 10_000]
    var workers = 2

    static func parse(_ arguments: [String]) -> Options {
        var o = Options()
        var rest = arguments[...]
        func value(_ flag: String) -> String {
            guard let next = rest.popFirst() else { fail("HostBench", "\(flag) needs a value") }
            return next
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--scenario":
                o.scenario = value(flag)
                guard ["all", "idle", "throughput", "restart"].contains(o.scenario) else {
                    fail("HostBench", "--scenario takes all, idle, throughput or restart")
                }
            case "--groups":
                guard let n = Int(value(flag)), n >= 1, n <= 200_000 else {
                    fail("HostBench", "--groups takes 1...200000")
                }
                o.groups = n
            case "--idle-seconds":
                guard let s = Double(value(flag)), s > 0 else { fail("HostBench", "--idle-seconds takes seconds") }
                o.idleSeconds = s
            case "--seconds":
                guard let s = Double(value(flag)), s > 0 else { fail("HostBench", "--seconds takes seconds") }
                o.seconds = s
            case "--in-flight":
                guard let n = Int(value(flag)), n >= 1, n <= 65_536 else {
                    fail("HostBench", "--in-flight takes 1...65536")
                }
                o.inFlight = n
            case "--tick-ms":
                guard let n = Int(value(flag)), n >= 1 else { fail("HostBench", "--tick-ms takes milliseconds") }
                o.tickMilliseconds = n
            case "--active":
                let list = value(flag).split(separator: ",").compactMap { Int($0) }
                guard !list.isEmpty, list.allSatisfy({ $0 >= 1 }) else {
                    fail("HostBench", "--active takes a list of group counts")
                }
                o.active = list
            case "--workers":
                guard let n = Int(value(flag)), (1...64).contains(n) else {
                    fail("HostBench", "--workers takes 1...64")
                }
                o.workers = n
            case "--dir": o.directory = value(flag)
            case "--quick":
                o.groups = 2_000
                o.idleSeconds = 10
                o.seconds = 2
            default: fail("HostBench", "unknown argument \(flag)")
            }
        }
        return o
    }
}

/// Applies by counting: the cheapest state machine, so the figures are the host's.
final class CountingStateMachine: StateMachine, @unchecked Sendable {
    private let last = Atomic<UInt64>(0)
    var appliedIndex: LogIndex { LogIndex(last.load(ordering: .relaxed)) }
    func apply(_ entries: [Entry]) throws(StateMachineError) {
        last.store(entries.last!.index.rawValue, ordering: .relaxed)
    }
}

/// The state machines of every node, kept across restarts.
final class Machines: Sendable {
    private let all = Mutex<[Int: [ReplicaKey: CountingStateMachine]]>([:])

    func machine(node: Int, _ replica: ReplicaKey) -> CountingStateMachine {
        all.withLock { m in
            if let existing = m[node]?[replica] { return existing }
            let fresh = CountingStateMachine()
            m[node, default: [:]][replica] = fresh
            return fresh
        }
    }
}

/// Heap bytes in use (glibc mallinfo2): exact, unlike RSS, which keeps freed pages.
func heapInUse() -> Int { Int(craft_heap_in_use()) }

/// CPU seconds (user + system) of this process.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            let value = try await body()
            box.withLock { $0 = .success(value) }
        } catch {
            box.withLock { $0 = .failure(error) }
        }
        done.signal()
    }
    done.wait()
    return try box.withLock { $0! }.get()
}

final class Cluster: @unchecked Sendable {
    let options: Options
    let clusterID = ClusterID.random()
    let nodeIDs: [NodeID]
    let names: [StorageName]
    let map: ClusterMap
    let network = InMemoryNetwork()
    var hosts: [NodeHost?] = [nil, nil, nil]
    var hostOptions = NodeHost.Options()
    let machines = Machines()

    init(_ options: Options) throws {
        self.options = options
        let ids = (0..<3).map { _ in NodeID.random() }.sorted()
        let names = try (0..<3).map { try StorageName("bench\($0)") }
        nodeIDs = ids
        self.names = names
        map = try ClusterMap(Dictionary(uniqueKeysWithValues: (0..<3).map { (ids[$0], [names[$0]]) }))
        hostOptions.tickMilliseconds = options.tickMilliseconds
        hostOptions.workers = options.workers
        hostOptions.applyWorkers = 1
        hostOptions.dormantAfterQuiescedTicks = 0
        hostOptions.maxCampaignsPerTick = NodeHost.Options().maxCampaignsPerTick
        hostOptions.requestTimeoutTicks = max(50, 10_000 / options.tickMilliseconds)
        try? FileManager.default.removeItem(atPath: options.directory)
    }

    /// Starts node `i`; returns the seconds spent opening its storage (metadata, WAL
    /// recovery) and building its host (loading every replica dormant).
    @discardableResult
    func start(_ i: Int) throws -> (storage: Double, host: Double) {
        let root = "\(options.directory)/node\(i)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let t0 = now()
        let storage = try Storage(
            root: root, clusterID: clusterID, name: names[i], nodeID: nodeIDs[i], createIfMissing: true)
        let t1 = now()
        var o = hostOptions
        o.seed = UInt64(i + 1)
        // One state machine per replica for the whole run, so a restarted node finds them
        // as a durable state machine would be (nothing to re-apply).
        let machines = self.machines
        let host = try NodeHost(
            nodeID: nodeIDs[i], cluster: map, storages: [storage], options: o,
            stateMachines: { replica, _, _ in machines.machine(node: i, replica) })
        let t2 = now()
        host.start(transport: network.attach(nodeIDs[i], receiver: host))
        hosts[i] = host
        return (t1 - t0, t2 - t1)
    }

    func stop(_ i: Int) {
        network.detach(nodeIDs[i])
        hosts[i]?.stop()
        hosts[i] = nil
    }

    func key(_ n: Int) -> PartitionKey {
        PartitionKey(authority: names[0], partitionID: try! PartitionID(UInt64(n) + 2))
    }

    func create(_ count: Int) throws -> [PartitionKey] {
        let keys = (0..<count).map(key)
        let replicas = (0..<3).map { RouteReplica(member: MemberID(UInt64($0 + 1)), storage: names[$0], role: .voter) }
        for chunk in stride(from: 0, to: count, by: 10_000) {
            for i in 0..<3 {
                let specs = (chunk..<min(count, chunk + 10_000)).map { n in
                    ReplicaSpec(
                        partition: keys[n], member: MemberID(UInt64(i + 1)), storage: names[i], replicas: replicas,
                        campaign: n % 3 == i)
                }
                try hosts[i]!.createReplicas(specs)
            }
        }
        return keys
    }

    func totals() async -> HostCounters {
        var t = HostCounters()
        for h in hosts { if let h { t.add(await h.counters()) } }
        return t
    }

    func waitUntil(_ what: String, seconds: Double, _ condition: () async -> Bool) async throws {
        let deadline = now() + seconds
        while now() < deadline {
            if await condition() { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        fail("HostBench", "timed out waiting until \(what)")
    }

    /// The node leading each group, from every node's status.
    func leaders(_ keys: [PartitionKey]) async -> [Int] {
        var out: [Int] = []
        for key in keys {
            var found = -1
            for (i, h) in hosts.enumerated() {
                if let h, let s = try? await h.status(of: key), s.role == .leader { found = i }
            }
            out.append(found)
        }
        return out
    }

    var walStatistics: (fsyncs: UInt64, entries: UInt64) {
        var f: UInt64 = 0
        var e: UInt64 = 0
        for h in hosts {
            for s in h?.walStatistics ?? [] {
                f += s.statistics.fdatasyncs
                e += s.statistics.entries
            }
        }
        return (f, e)
    }
}

/// Closed-loop writers: `inFlight` proposals outstanding over `keys` at their leaders.
func drive(
    _ cluster: Cluster, _ keys: [PartitionKey], leaders: [Int], inFlight: Int, seconds: Double, size: Int
)
    -> (perSecond: Double, p50: Double, p99: Double, errors: Int)
{
    final class State: @unchecked Sendable {
        let lock = NSLock()
        var latencies: [Double] = []
        var errors = 0
        var stopAt = 0.0
        var outstanding = 0
        let done = DispatchSemaphore(value: 0)
    }
    let state = State()
    state.stopAt = now() + seconds
    let payload = [UInt8](repeating: 0x5A, count: size)
    let start = now()
    @Sendable func issue(_ slot: Int, _ n: Int) {
        let i = (slot + n * inFlight) % keys.count
        let host = cluster.hosts[leaders[i]]!
        let t0 = now()
        host.propose(keys[i], payload) { result in
            let t1 = now()
            state.lock.lock()
            if case .success = result { state.latencies.append((t1 - t0) * 1e6) } else { state.errors += 1 }
            let more = t1 < state.stopAt
            if !more { state.outstanding -= 1 }
            let finished = state.outstanding == 0
            state.lock.unlock()
            if more { issue(slot, n + 1) } else if finished { state.done.signal() }
        }
    }
    state.outstanding = inFlight
    for slot in 0..<inFlight { issue(slot, 0) }
    state.done.wait()
    let elapsed = now() - start
    let sorted = state.latencies.sorted()
    return (Double(sorted.count) / elapsed, percentile(sorted, 0.5), percentile(sorted, 0.99), state.errors)
}

// MARK: - Scenarios

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
print("HostBench: 3 nodes in one process, in-memory transport, real WAL + metadata per node in \(options.directory)")
print(
    "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; tick \(options.tickMilliseconds) ms; \(options.groups) groups x 3 replicas"
)

func idleAndMemory(_ cluster: Cluster) throws -> [PartitionKey] {
    let heap0 = heapInUse()
    let t0 = now()
    let keys = try cluster.create(options.groups)
    try blocking {
        try await cluster.waitUntil("every group has a leader and quiesced", seconds: 600) {
            let t = await cluster.totals()
            return t.awake == 0 && t.leadershipsGained >= UInt64(options.groups)
        }
    }
    print("created \(options.groups) groups, elected and quiesced in \(format(now() - t0, 1)) s")
    let heapQuiesced = heapInUse()
    let before = try blocking { await cluster.totals() }
    let frames0 = cluster.network.counters
    let cpu0 = cpuSeconds()
    let wall0 = now()
    Thread.sleep(forTimeInterval: options.idleSeconds)
    let cpu = cpuSeconds() - cpu0
    let wall = now() - wall0
    let after = try blocking { await cluster.totals() }
    let frames = cluster.network.counters.frames - frames0.frames
    print("")
    print("idle: \(options.groups) quiesced groups x 3 nodes for \(format(wall, 1)) s")
    print(
        "  CPU \(format(cpu, 3)) s = \(format(100 * cpu / wall, 3)) % of one core for all three nodes (target <= 1 %)")
    print(
        "  member ticks given \(after.ticksGiven - before.ticksGiven), raft messages sent \(after.messagesSent - before.messagesSent), liveness frames \(frames)"
    )
    let quiescedPer = Double(heapQuiesced - heap0) / Double(3 * options.groups)
    let n = try blocking {
        var total = 0
        for h in cluster.hosts { total += await h!.suspendQuiescedReplicas() }
        return total
    }
    let heapDormant = heapInUse()
    let dormantPer = Double(heapDormant - heap0) / Double(3 * options.groups)
    print("")
    print("memory (heap in use, glibc mallinfo2; includes the WAL index and metadata of each replica):")
    print("  per quiesced replica \(format(quiescedPer)) B")
    print("  per dormant replica  \(format(dormantPer)) B (target <= 4096 B), after shrinking \(n) replicas")
    return keys
}

func rehydrate(_ cluster: Cluster, _ keys: [PartitionKey]) throws {
    let sample = Array(keys.prefix(min(300, keys.count)))
    let leaders = try blocking { await cluster.leaders(sample) }
    let payload = [UInt8](repeating: 1, count: options.entrySize)
    func once() throws -> [Double] {
        var lat: [Double] = []
        for (i, key) in sample.enumerated() {
            let host = cluster.hosts[leaders[i]]!
            let t0 = now()
            _ = try blocking { try await host.propose(key, payload) }
            lat.append((now() - t0) * 1e6)
        }
        return lat.sorted()
    }
    let cold = try once()
    let warm = try once()
    print("")
    print("cold write to a dormant group (rebuilt, no election) vs warm write, \(sample.count) groups, one writer:")
    print(
        "  cold p50 \(format(percentile(cold, 0.5))) µs p99 \(format(percentile(cold, 0.99))) µs; warm p50 \(format(percentile(warm, 0.5))) µs p99 \(format(percentile(warm, 0.99))) µs; cold/warm p50 \(format(percentile(cold, 0.5) / percentile(warm, 0.5), 2)) (target <= 1.5)"
    )
}

func throughput(_ cluster: Cluster, _ keys: [PartitionKey]) throws {
    let base = try measureSyncBaseline(
        path: "\(options.directory)/baseline.log", recordBytes: options.entrySize + 40, seconds: 3)
    print("")
    print(
        "throughput, \(options.inFlight) proposals in flight, \(options.entrySize) B, \(format(options.seconds, 1)) s each; baseline one pwrite + fdatasync per write: \(format(base.perSecond)) writes/s (p50 \(format(base.p50)) µs)"
    )
    print("active groups  writes/s   x baseline  entries/fdatasync  p50 µs   p99 µs   errors")
    for active in options.active where active <= keys.count {
        let set = Array(keys.prefix(active))
        let leaders = try blocking { await cluster.leaders(set) }
        guard !leaders.contains(-1) else { fail("HostBench", "a group has no leader") }
        let w0 = cluster.walStatistics
        let r = drive(
            cluster, set, leaders: leaders, inFlight: options.inFlight, seconds: options.seconds,
            size: options.entrySize)
        let w1 = cluster.walStatistics
        let perFsync = Double(w1.entries - w0.entries) / Double(max(1, w1.fsyncs - w0.fsyncs))
        print(
            "\(String(active).padded(15))\(format(r.perSecond).padded(11))\(format(r.perSecond / base.perSecond, 1).padded(12))\(format(perFsync, 1).padded(19))\(format(r.p50).padded(9))\(format(r.p99).padded(9))\(r.errors)"
        )
    }
}

func restart(_ cluster: Cluster, _ keys: [PartitionKey]) throws {
    // 1. One node restarts while the other two run: they fail over the groups it led (they
    //    declare it dead while it loads) on the same 2 cores.
    let key = keys[0]
    try restartOne(cluster, key, replicas: keys.count)
    // 2. The whole cluster stops; the node starts alone (nothing else competes for the
    //    cores), then the others, and the first write to a group elects its leader lazily.
    try blocking {
        try await cluster.waitUntil("quiet again", seconds: 600) { await cluster.totals().awake == 0 }
    }
    for i in 0..<3 { cluster.stop(i) }
    let t0 = now()
    let alone = try cluster.start(2)
    let ready = now() - t0
    try cluster.start(0)
    try cluster.start(1)
    var target = 2
    let t1 = now()
    var written = false
    while !written && now() - t1 < 60 {
        do {
            let host = cluster.hosts[target]!
            _ = try blocking { try await host.propose(key, [10]) }
            written = true
        } catch {
            // The replica knows no leader yet: the request woke it; it campaigns after an
            // election timeout, or learns the leader. Retry at the leader it names.
            if case HostError.notLeader(_, let node?) = error, let i = cluster.nodeIDs.firstIndex(of: node) {
                target = i
            }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }
    let first = now() - t1
    print(
        "restart of the whole cluster: the node with \(keys.count) replicas alone: open storage + WAL recovery \(format(alone.storage, 2)) s, load \(format(alone.host, 2)) s: ready to serve after \(format(ready, 2)) s (target <= 5 s); first write after all three started: \(format(first, 2)) s (one lazy election)"
    )
}

/// Restarts node 2 while the others run; prints the phases.
func restartOne(_ cluster: Cluster, _ key: PartitionKey, replicas: Int) throws {
    cluster.stop(2)
    let t0 = now()
    let phases = try cluster.start(2)
    let loaded = now() - t0
    let host = cluster.hosts[2]!
    let leaders = try blocking { await cluster.leaders([key]) }
    _ = try blocking { try await cluster.hosts[leaders[0]]!.propose(key, [9]) }
    try blocking { [host] in
        try await cluster.waitUntil("the restarted node applied a new write", seconds: 60) {
            guard let s = try? await host.status(of: key) else { return false }
            return s.applied >= s.commit && s.commit > .zero && s.residency != .dormant
        }
    }
    let serving = now() - t0
    let c = try blocking { [host] in await host.counters() }
    print("")
    print("restart of a node with \(replicas) replicas while the other two fail over its groups:")
    print(
        "  open storage + WAL recovery \(format(phases.storage, 2)) s, load replicas dormant \(format(phases.host, 2)) s: ready to serve after \(format(loaded, 2)) s (target <= 5 s); first write (at its leader elsewhere) applied on it after \(format(serving, 2)) s; still dormant \(c.dormant), campaigns \(c.campaigns)"
    )
}

do {
    let cluster = try Cluster(options)
    for i in 0..<3 { try cluster.start(i) }
    var keys: [PartitionKey] = []
    switch options.scenario {
    case "idle":
        keys = try idleAndMemory(cluster)
    case "throughput":
        keys = try cluster.create(options.groups)
        try blocking {
            try await cluster.waitUntil("leaders", seconds: 600) {
                await cluster.totals().leadershipsGained >= UInt64(options.groups)
            }
        }
        try throughput(cluster, keys)
    case "restart":
        keys = try cluster.create(options.groups)
        try blocking {
            try await cluster.waitUntil("leaders and quiescence", seconds: 1200) {
                let t = await cluster.totals()
                return t.awake == 0 && t.leadershipsGained >= UInt64(options.groups)
            }
        }
        try restart(cluster, keys)
    default:
        keys = try idleAndMemory(cluster)
        try rehydrate(cluster, keys)
        try throughput(cluster, keys)
        try restart(cluster, keys)
    }
    for i in 0..<3 { cluster.stop(i) }
    try? FileManager.default.removeItem(atPath: options.directory)
} catch {
    fail("HostBench", "\(error)")
}

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
import RaftTesting
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

/// The benchmark's cluster: the shared `LocalCluster`, with state machines that only count
/// (so the figures are the host's).
typealias Cluster = LocalCluster<CountingStateMachine>

func makeCluster(_ options: Options) throws -> Cluster {
    var c = Cluster.Configuration()
    c.directory = options.directory
    c.storagePrefix = "bench"
    c.options.tickMilliseconds = options.tickMilliseconds
    c.options.workers = options.workers
    c.options.applyWorkers = 1
    c.options.dormantAfterQuiescedTicks = 0
    c.options.requestTimeoutTicks = max(50, 10_000 / options.tickMilliseconds)
    try? FileManager.default.removeItem(atPath: options.directory)
    return try Cluster(c, machines: MachineRegistry { CountingStateMachine() })
}

extension LocalCluster {
    func waitUntil(_ what: String, seconds: Double, _ condition: () async -> Bool) async throws {
        do { try await waitUntil(what, within: seconds, condition) } catch { fail("HostBench", "\(error)") }
    }

    /// The node leading each group, from every node's status (-1: none).
    func leaders(_ keys: [PartitionKey]) async -> [Int] {
        var out: [Int] = []
        for key in keys { out.append(await leader(of: key) ?? -1) }
        return out
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

/// Nodes busy creating groups in bulk are not dead: peers must not declare them so.
func printPeerDeaths(_ cluster: Cluster) {
    let deaths = cluster.hosts.compactMap { $0?.peerDeathCount }.reduce(0, +)
    print("peer deaths declared while the groups were created and elected: \(deaths) (expected 0)")
}

func idleAndMemory(_ cluster: Cluster) throws -> [PartitionKey] {
    let heap0 = heapInUse()
    let t0 = now()
    let keys = try cluster.createGroups(options.groups)
    try blocking {
        try await cluster.waitUntil("every group has a leader and quiesced", seconds: 600) {
            let t = await cluster.totals()
            return t.awake == 0 && t.leadershipsGained >= UInt64(options.groups)
        }
    }
    print("created \(options.groups) groups, elected and quiesced in \(format(now() - t0, 1)) s")
    printPeerDeaths(cluster)
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
        let perFsync = Double(w1.entries - w0.entries) / Double(max(1, w1.fdatasyncs - w0.fdatasyncs))
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
    for i in 0..<3 { cluster.crash(i) }
    let t0 = now()
    let alone = try cluster.startTimed(2)
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
        "restart of the whole cluster: the node with \(keys.count) replicas alone: open storage + WAL recovery \(format(alone.storageSeconds, 2)) s, load \(format(alone.hostSeconds, 2)) s: ready to serve after \(format(ready, 2)) s (target <= 5 s); first write after all three started: \(format(first, 2)) s (one lazy election)"
    )
}

/// Restarts node 2 while the others run; prints the phases.
func restartOne(_ cluster: Cluster, _ key: PartitionKey, replicas: Int) throws {
    cluster.crash(2)
    let t0 = now()
    let phases = try cluster.startTimed(2)
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
        "  open storage + WAL recovery \(format(phases.storageSeconds, 2)) s, load replicas dormant \(format(phases.hostSeconds, 2)) s: ready to serve after \(format(loaded, 2)) s (target <= 5 s); first write (at its leader elsewhere) applied on it after \(format(serving, 2)) s; still dormant \(c.dormant), campaigns \(c.campaigns)"
    )
}

do {
    let cluster = try makeCluster(options)
    for i in 0..<3 { try cluster.start(i) }
    var keys: [PartitionKey] = []
    switch options.scenario {
    case "idle":
        keys = try idleAndMemory(cluster)
    case "throughput":
        keys = try cluster.createGroups(options.groups)
        try blocking {
            try await cluster.waitUntil("leaders", seconds: 600) {
                await cluster.totals().leadershipsGained >= UInt64(options.groups)
            }
        }
        try throughput(cluster, keys)
    case "restart":
        keys = try cluster.createGroups(options.groups)
        try blocking {
            try await cluster.waitUntil("leaders and quiescence", seconds: 1200) {
                let t = await cluster.totals()
                return t.awake == 0 && t.leadershipsGained >= UInt64(options.groups)
            }
        }
        printPeerDeaths(cluster)
        try restart(cluster, keys)
    default:
        keys = try idleAndMemory(cluster)
        try rehydrate(cluster, keys)
        try throughput(cluster, keys)
        try restart(cluster, keys)
    }
    for i in 0..<3 { cluster.crash(i) }
    try? FileManager.default.removeItem(atPath: options.directory)
} catch {
    fail("HostBench", "\(error)")
}

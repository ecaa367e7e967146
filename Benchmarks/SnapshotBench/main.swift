// SnapshotBench: a partition of real git packs streamed as a snapshot to a replica that
// has none of it, between three in-process nodes on real sockets (127.0.0.1), while small
// reference transactions run on 100 other three-member partitions.
//
//   .build/release/SnapshotBench [--mb 1024] [--pack-mb 128] [--seconds 5] [--level 1]
//       [--dir PATH]
//
// Node 2 is down while the large partition gets its repositories (`--mb` in all, one pack
// of `--pack-mb` MiB each, made by git from incompressible data) and enough small writes
// for the leader to compact its log past node 2. Node 2 then starts again and catches up
// by snapshot. Prints the stream's MB/s of partition data (the leader's send time and
// restart-to-installed time), the compression ratio, the CPU the process used during the
// transfer, and the p99 of the small transactions during the transfer against the same
// load without it, measured in the same run (with one pwrite + fdatasync per write as the
// disk's baseline). Figures go to docs/BENCHMARKS.md.

import BenchSupport
import Foundation
import RaftConsensus
import RaftEngine
import RaftTesting
import Synchronization

struct Options {
    var megabytes = 1_024
    var packMegabytes = 128
    var seconds = 5.0
    var level = 1
    var directory = "bench-data/snapshot"
    /// Also measure a transfer with no other load (the stream's own speed).
    var alone = false

    static func parse(_ arguments: [String]) -> Options {
        var o = Options()
        var rest = arguments[...]
        func value(_ flag: String) -> String {
            guard let next = rest.popFirst() else { fail("SnapshotBench", "\(flag) needs a value") }
            return next
        }
        func int(_ flag: String, _ range: ClosedRange<Int>) -> Int {
            guard let n = Int(value(flag)), range.contains(n) else {
                fail("SnapshotBench", "\(flag) takes \(range.lowerBound)...\(range.upperBound)")
            }
            return n
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--mb": o.megabytes = int(flag, 1...65_536)
            case "--pack-mb": o.packMegabytes = int(flag, 1...1_024)
            case "--level": o.level = int(flag, -7...19)
            case "--seconds":
                guard let s = Double(value(flag)), s > 0 else { fail("SnapshotBench", "--seconds takes seconds") }
                o.seconds = s
            case "--dir": o.directory = value(flag)
            case "--alone": o.alone = true
            default: fail("SnapshotBench", "unknown argument \(flag) (see the header of main.swift)")
            }
        }
        return o
    }
}

func git(_ arguments: [String], input: Data? = nil) -> Data {
    var process = Subprocess(
        executable: "/usr/bin/git",
        environment: [
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
        ])
    process.maximumOutputBytes = 2 << 30
    process.timeoutMilliseconds = 600_000
    guard let outcome = try? process.run(arguments, input: input.map { Array($0) } ?? []), outcome.succeeded else {
        fail("SnapshotBench", "git \(arguments.prefix(3).joined(separator: " ")) failed (apt-get install git)")
    }
    return Data(outcome.standardOutput)
}

/// User plus system CPU seconds of this process so far.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
try? FileManager.default.removeItem(atPath: options.directory)
try FileManager.default.createDirectory(atPath: options.directory, withIntermediateDirectories: true)
let root = FileManager.default.currentDirectoryPath + "/" + options.directory

print("SnapshotBench: 3 nodes in one process, TCP on 127.0.0.1, real WAL + metadata + bare repositories per node")
print(
    "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; partition \(options.megabytes) MiB in packs of \(options.packMegabytes) MiB; zstd level \(options.level)"
)
let base = try measureSyncBaseline(path: root + "/baseline.log", recordBytes: 256, seconds: 3)
print("baseline one pwrite + fdatasync per write: \(format(base.perSecond)) writes/s (p50 \(format(base.p50)) µs)")

// Two small commits for the small transactions, and one large pack of random data.
let work = root + "/work"
_ = git(["init", "-q", "-b", "main", work])
let commits: [ObjectID] = try (1...2).map { n in
    try "\(n)\n".write(toFile: work + "/f.txt", atomically: true, encoding: .utf8)
    _ = git(["-C", work, "add", "."])
    _ = git(["-C", work, "commit", "-q", "-m", "c\(n)"])
    return try ObjectID(
        hex: String(decoding: git(["-C", work, "rev-parse", "HEAD"]), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines))
}
let smallPack = Array(git(["-C", work, "pack-objects", "--revs", "--stdout", "-q"], input: Data("main\n".utf8)))
let large = root + "/large"
_ = git(["init", "-q", "-b", "main", large])
var generator = SplitMix64(seed: 7)
try Data((0..<(options.packMegabytes << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
    .write(to: URL(fileURLWithPath: large + "/data.bin"))
_ = git(["-C", large, "add", "."])
_ = git(["-C", large, "commit", "-q", "-m", "data"])
let largeTip = try ObjectID(
    hex: String(decoding: git(["-C", large, "rev-parse", "HEAD"]), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines))
let largePack = Array(git(["-C", large, "pack-objects", "--revs", "--stdout", "-q"], input: Data("main\n".utf8)))

var c = LocalCluster<PartitionStateMachine>.Configuration()
c.directory = root + "/cluster"
c.tcp = true
c.options.tickMilliseconds = 20
c.options.workers = 2
c.options.applyWorkers = 1
c.options.requestTimeoutTicks = 3_000
c.options.logRetentionEntries = 256
c.options.compactionStepEntries = 64
c.options.compactionIntervalTicks = 5
for node in 0..<3 {
    try FileManager.default.createDirectory(atPath: "\(root)/cluster/node\(node)", withIntermediateDirectories: true)
}
let checkpointers = try (0..<3).map { node throws(IOError) in
    try PartitionCheckpointer(storageRoot: "\(root)/cluster/node\(node)")
}
@Sendable func partitionDirectory(_ node: Int, _ key: PartitionKey) -> String {
    "\(root)/cluster/node\(node)/+raft/partitions/p\(key.partitionID.rawValue)"
}
let cluster = try LocalCluster<PartitionStateMachine>(
    c,
    machines: MachineRegistry(perReplicaWithStorage: { node, replica, storage in
        try! PartitionStateMachine(
            storageRoot: "\(root)/cluster/node\(node)", directory: partitionDirectory(node, replica.partition),
            checkpointer: checkpointers[node], partition: replica.partition, registry: storage.metadata)
    }))
let registry = cluster.machines
cluster.configuration.bulkService = { node, host in
    PartitionAttachments(host: host) { key in partitionDirectory(node, key) }
}
let level = options.level
cluster.configuration.snapshotService = { node, host, clusterID in
    var o = PartitionSnapshots.Options()
    o.compressionLevel = level
    return PartitionSnapshots(host: host, clusterID: clusterID, options: o) { key in
        registry.existing(node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
    }
}
try cluster.startAll()

func writer(_ node: Int) -> PartitionWriter {
    PartitionWriter(host: cluster.hosts[node]!, attachments: cluster.bulkServices[node] as? PartitionAttachments) {
        key in
        registry.existing(node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
    }
}

/// Commits at the partition's leader, retrying while leadership settles.
func commit(_ key: PartitionKey, _ operations: [PartitionOperation]) async throws(PartitionWriteError) -> LogIndex {
    var lastError = PartitionWriteError.host(.timedOut)
    for _ in 0..<500 {
        let node = await cluster.leader(of: key) ?? 0
        do { return try await writer(node).commit(key, PartitionTransaction(operations)) } catch {
            lastError = error
            guard error.isRetryable else { throw error }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }
    throw lastError
}

func repository(_ key: PartitionKey) -> RelativePath {
    try! RelativePath("@hashed/\(key.partitionID.rawValue % 100)/p\(key.partitionID.rawValue).git")
}
let main = try RefName("refs/heads/main")

// 100 small partitions.
let others = try cluster.createGroups(100)
try await withThrowingTaskGroup(of: Void.self) { group in
    for (k, key) in others.enumerated() {
        if k >= 16 { try await group.next() }
        group.addTask {
            _ = try await commit(
                key,
                [
                    .createRepository(repository(key), defaultBranch: main),
                    .attachPack(repository(key), .inline(pack: smallPack, index: [])),
                ])
        }
    }
    try await group.waitForAll()
}

// The large partition, written while node 2 is down.
let big = try cluster.createGroups(1, from: 100)[0]
_ = try await commit(big, [.setValue(key: "created", value: [1])])
let down = 2
cluster.crash(down)
let t0 = now()
let repositories = max(1, options.megabytes / options.packMegabytes)
for n in 0..<repositories {
    let path = try RelativePath("@hashed/big/r\(n).git")
    _ = try await commit(
        big,
        [
            .createRepository(path, defaultBranch: main), .attachPack(path, .inline(pack: largePack, index: [])),
            .updateReferences(path, [ReferenceUpdate(name: main, old: .zero, new: largeTip)]),
        ])
}
var last = LogIndex.zero
for n in 0..<400 { last = try await commit(big, [.setValue(key: "k\(n % 16)", value: Array("\(n)".utf8))]) }
let lastIndex = last
let leader = await cluster.leader(of: big) ?? 0
try await cluster.waitUntil("the leader compacted its log past node \(down)", within: 120) {
    (try? await cluster.hosts[leader]!.status(of: big))?.firstIndex ?? .zero > LogIndex(50)
}
print(
    "large partition: \(repositories) repositories, \(format(Double(repositories * largePack.count) / 1_048_576, 0)) MiB of packs, pushed in \(format(now() - t0, 1)) s; the leader's log starts at \(try await cluster.hosts[leader]!.status(of: big).firstIndex)"
)
// Written back now, not by the kernel in the middle of a measurement.
let rootHandle = try DiskFile.open(root, .directory)
try rootHandle.syncFileSystem()
try rootHandle.close()

// The stream alone, in this thread: read (io_uring), compress, checksum, decode, write and
// fsync into a staging directory, no network.
do {
    let machine = registry.existing(
        node: leader, replica: ReplicaKey(partition: big, member: MemberID(UInt64(leader + 1))))!
    let prepared = try machine.prepareSnapshot(id: 1)
    let staged = root + "/local-staging"
    try FileManager.default.createDirectory(atPath: staged, withIntermediateDirectories: true)
    let reader = try SnapshotStreamReader(
        directory: staged,
        expectation: .init(cluster: cluster.clusterID, partition: big, above: .zero, maximumBytes: 1 << 40))
    let writer = try SnapshotStreamWriter(
        level: options.level, reader: try SequentialFileReader(chunkBytes: 1 << 20, depth: 4))
    let header = SnapshotHeader(
        cluster: cluster.clusterID, partition: big, snapshotID: 1, index: prepared.index, term: Term(1),
        confState: ConfState(voters: [MemberID(1)]), items: UInt32(prepared.items.count),
        totalBytes: prepared.totalBytes)
    var produce = 0.0
    var consume = 0.0
    let t = now()
    var mark = now()
    let stats = try writer.write(header: header, items: prepared.items, pieceBytes: 4 << 20) { piece in
        produce += now() - mark
        let c = now()
        try! reader.consume(piece)
        consume += now() - c
        mark = now()
        return true
    }!
    try reader.finish()
    let elapsed = now() - t
    print(
        "stream alone (no network): \(format(Double(stats.fileBytes) / 1e6 / elapsed, 0)) MB/s; writing side \(format(produce, 2)) s, receiving side (write, fsync) \(format(consume, 2)) s"
    )
    try FileManager.default.removeItem(atPath: staged)
    machine.removePreparedSnapshots()
}

final class Tally: @unchecked Sendable {
    let lock = Mutex<(latencies: [Double], errors: Int)>(([], 0))
}

/// Small reference transactions on the other partitions, 16 in flight, for at least
/// `seconds` and until `done()`; sorted latencies in ms.
func smallLoad(_ run: Int, seconds: Double, until done: @escaping @Sendable () -> Bool) async -> [Double] {
    let tally = Tally()
    let deadline = now() + seconds
    await withTaskGroup(of: Void.self) { group in
        for task in 0..<16 {
            group.addTask {
                let name = try! RefName("refs/heads/small\(run)-\(task)")
                var current: [PartitionKey: ObjectID] = [:]
                var n = task
                var latencies: [Double] = []
                var errors = 0
                while now() < deadline || !done() {
                    let key = others[n % others.count]
                    n += 16
                    let old = current[key] ?? .zero
                    let new = old == commits[0] ? commits[1] : commits[0]
                    let t = now()
                    do {
                        _ = try await commit(
                            key, [.updateReferences(repository(key), [ReferenceUpdate(name: name, old: old, new: new)])]
                        )
                        latencies.append((now() - t) * 1e3)
                        current[key] = new
                    } catch {
                        errors += 1
                        if errors > 20 { break }
                    }
                }
                tally.lock.withLock {
                    $0.latencies += latencies
                    $0.errors += errors
                }
            }
        }
    }
    return tally.lock.withLock { $0.latencies.sorted() }
}

func summary(_ l: [Double]) -> String {
    "\(l.count) transactions, p50 \(format(percentile(l, 0.5), 1)) ms, p99 \(format(percentile(l, 0.99), 1)) ms"
}

let quietCPU = cpuSeconds()
let quietStart = now()
let quiet = await smallLoad(1, seconds: options.seconds) { true }
let quietCores = (cpuSeconds() - quietCPU) / (now() - quietStart)
print(
    "small transactions on 100 partitions without a transfer: \(summary(quiet)); process CPU \(format(quietCores * 100))% of a core"
)

let snapshots = { (cluster.snapshotServices[leader] as? PartitionSnapshots)?.counters ?? .init() }
let before = snapshots()
let installed = Atomic<Bool>(false)
let cpu0 = cpuSeconds()
let t1 = now()
try cluster.start(down)
async let watch: Double = {
    try await cluster.waitUntil("node \(down) installed the snapshot", within: 600) {
        (registry.existing(node: down, replica: ReplicaKey(partition: big, member: MemberID(UInt64(down + 1))))?
            .appliedIndex ?? .zero) >= lastIndex
    }
    installed.store(true, ordering: .releasing)
    return now() - t1
}()
let busy =
    options.alone
    ? []
    : await smallLoad(2, seconds: 1) { installed.load(ordering: .acquiring) }
let caughtUp = try await watch
let cpu = cpuSeconds() - cpu0
let after = snapshots()
let fileBytes = Double(after.sentFileBytes - before.sentFileBytes)
let streamBytes = Double(after.sentStreamBytes - before.sentStreamBytes)
let sendSeconds = Double(after.sentNanoseconds - before.sentNanoseconds) / 1e9
print(
    "snapshot: \(after.sent - before.sent) sent, \(format(fileBytes / 1_048_576, 0)) MiB of partition data in \(format(sendSeconds, 2)) s = \(format(fileBytes / 1e6 / max(sendSeconds, 1e-9), 0)) MB/s; restart to installed \(format(caughtUp, 2)) s = \(format(fileBytes / 1e6 / caughtUp, 0)) MB/s"
)
print(
    "  stream \(format(streamBytes / 1_048_576, 0)) MiB: compression ratio \(format(fileBytes / max(streamBytes, 1), 3)); process CPU \(format(cpu, 1)) s over \(format(caughtUp, 1)) s (\(format(cpu / caughtUp * 100))% of a core; \(format(quietCores * 100))% without the transfer); the transfer's own: about \(format(max(0, cpu - (options.alone ? 0 : quietCores * caughtUp)) / max(fileBytes / 1e9, 1e-9), 1)) CPU s per GB"
)
print("small transactions meanwhile: \(summary(busy))")
print(
    "  p99 during / without: \(format(percentile(busy, 0.99) / max(percentile(quiet, 0.99), 0.001), 2))x (target: within 2x); \(format(fileBytes / 1e6 / max(sendSeconds, 1e-9) / 400, 2))x the 400 MB/s target"
)

cluster.stopAll()
for checkpointer in checkpointers { checkpointer.stop() }
try? FileManager.default.removeItem(atPath: options.directory)

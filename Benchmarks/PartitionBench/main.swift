// PartitionBench: Git reference transactions through three in-process nodes (in-memory
// transport; real WAL, metadata store and bare repositories per node). Each transaction
// is verified on the leader (expected old values, objects), committed through Raft and
// applied to every replica's repository in git's formats. Prints transactions and
// reference updates per second with latency percentiles, for 1 and 100 updates per
// transaction over 1 and 1,000 partitions, against one pwrite + fdatasync per write
// measured in the same run. Figures go to docs/BENCHMARKS.md.
//
//   .build/release/PartitionBench [--seconds S] [--in-flight N] [--partitions 1,1000]
//       [--refs 1,100] [--pack-mb 1,16,64] [--replicate-mb 200] [--tick-ms MS] [--dir PATH]
//
// --pack-mb: pushes of one commit with that many MiB of incompressible data to a new
// single-member partition each (validated by git on the leader, stored as an attachment,
// applied by hard link): the pack attach throughput in MB/s.
// --replicate-mb: one push of that many MiB to a three-member partition (the attachment
// goes to a majority over the bulk path before its entry is proposed, the last member
// fetches it), while small reference transactions run on 100 other partitions; their p99
// and the elections are compared with the same load without the push. 0 skips it.

import BenchSupport
import Foundation
import RaftConsensus
import RaftEngine
import RaftTesting
import Synchronization

struct Options {
    var seconds = 5.0
    var inFlight = 64
    var partitions = [1, 1_000]
    var refs = [1, 100]
    var packMegabytes = [1, 16, 64]
    var replicateMegabytes = 200
    var tickMilliseconds = 20
    var directory = "bench-data/partition"

    static func parse(_ arguments: [String]) -> Options {
        var o = Options()
        var rest = arguments[...]
        func value(_ flag: String) -> String {
            guard let next = rest.popFirst() else { fail("PartitionBench", "\(flag) needs a value") }
            return next
        }
        func list(_ flag: String) -> [Int] {
            let items = value(flag).split(separator: ",").compactMap { Int($0) }
            guard !items.isEmpty, items.allSatisfy({ $0 >= 1 && $0 <= 10_000 }) else {
                fail("PartitionBench", "\(flag) takes a comma-separated list of 1...10000")
            }
            return items
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--seconds":
                guard let s = Double(value(flag)), s > 0 else { fail("PartitionBench", "--seconds takes seconds") }
                o.seconds = s
            case "--in-flight":
                guard let n = Int(value(flag)), n >= 1, n <= 4_096 else {
                    fail("PartitionBench", "--in-flight takes 1...4096")
                }
                o.inFlight = n
            case "--partitions": o.partitions = list(flag)
            case "--refs": o.refs = list(flag)
            case "--pack-mb": o.packMegabytes = list(flag)
            case "--replicate-mb":
                guard let n = Int(value(flag)), n >= 0, n <= 4_096 else {
                    fail("PartitionBench", "--replicate-mb takes 0...4096")
                }
                o.replicateMegabytes = n
            case "--tick-ms":
                guard let n = Int(value(flag)), n >= 1, n <= 1_000 else {
                    fail("PartitionBench", "--tick-ms takes 1...1000")
                }
                o.tickMilliseconds = n
            case "--dir": o.directory = value(flag)
            default: fail("PartitionBench", "unknown argument \(flag) (see the header of main.swift)")
            }
        }
        return o
    }
}

/// Runs git; returns its standard output (the benchmark's source repository only).
@discardableResult
func git(_ arguments: [String], input: Data? = nil) -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    process.arguments = arguments
    process.environment = [
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
    ]
    let stdin = Pipe()
    let out = Pipe()
    process.standardInput = stdin
    process.standardOutput = out
    do { try process.run() } catch { fail("PartitionBench", "cannot run git (apt-get install git): \(error)") }
    if let input { stdin.fileHandleForWriting.write(input) }
    try? stdin.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        fail("PartitionBench", "git \(arguments.joined(separator: " ")) failed")
    }
    return data
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
try? FileManager.default.removeItem(atPath: options.directory)
try FileManager.default.createDirectory(atPath: options.directory, withIntermediateDirectories: true)
let root = FileManager.default.currentDirectoryPath + "/" + options.directory

// Two commits to point references at, and the pack that holds them.
let work = root + "/work"
git(["init", "-q", "-b", "main", work])
let commits: [ObjectID] = try (1...2).map { n in
    try "\(n)\n".write(toFile: work + "/f.txt", atomically: true, encoding: .utf8)
    git(["-C", work, "add", "."])
    git(["-C", work, "commit", "-q", "-m", "c\(n)"])
    let hex = String(decoding: git(["-C", work, "rev-parse", "HEAD"]), as: UTF8.self)
    return try ObjectID(hex: hex.trimmingCharacters(in: .whitespacesAndNewlines))
}
let pack = Array(git(["-C", work, "pack-objects", "--revs", "--stdout", "-q"], input: Data("main\n".utf8)))

print("PartitionBench: 3 nodes in one process, in-memory transport, real WAL + metadata + bare repositories per node")
print(
    "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; tick \(options.tickMilliseconds) ms; \(options.inFlight) transactions in flight"
)
let base = try measureSyncBaseline(path: root + "/baseline.log", recordBytes: 256, seconds: 3)
print("baseline one pwrite + fdatasync per write: \(format(base.perSecond)) writes/s (p50 \(format(base.p50)) µs)")

var c = LocalCluster<PartitionStateMachine>.Configuration()
c.directory = root + "/cluster"
c.options.tickMilliseconds = options.tickMilliseconds
c.options.workers = 2
c.options.applyWorkers = 1
c.options.requestTimeoutTicks = max(50, 20_000 / options.tickMilliseconds)
c.options.dormantAfterQuiescedTicks = 0
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
    machines: MachineRegistry(perReplica: { node, replica in
        try! PartitionStateMachine(
            storageRoot: "\(root)/cluster/node\(node)", directory: partitionDirectory(node, replica.partition),
            checkpointer: checkpointers[node])
    }))
cluster.configuration.bulkService = { node, host in
    PartitionAttachments(host: host) { key in partitionDirectory(node, key) }
}
try cluster.startAll()
let attachments = (0..<3).map { cluster.bulkServices[$0] as! PartitionAttachments }
let writers = (0..<3).map { node in
    PartitionWriter(host: cluster.hosts[node]!, attachments: attachments[node]) { key in
        cluster.machines.existing(node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
    }
}

/// One repository per partition (a relative path belongs to one partition of the storage).
func repository(_ key: PartitionKey) -> RelativePath {
    try! RelativePath("@hashed/\(key.partitionID.rawValue % 100)/p\(key.partitionID.rawValue).git")
}
let main = try RefName("refs/heads/main")

/// Commits at the partition's leader, retrying while leadership settles.
func commit(_ key: PartitionKey, _ operations: [PartitionOperation]) async throws(PartitionWriteError) -> LogIndex {
    var lastError = PartitionWriteError.host(.timedOut)
    for _ in 0..<500 {
        let node = await cluster.leader(of: key) ?? 0
        do { return try await writers[node].commit(key, PartitionTransaction(operations)) } catch {
            lastError = error
            guard error.isRetryable else { throw error }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }
    throw lastError
}

final class Tally: @unchecked Sendable {
    let lock = Mutex<(latencies: [Double], errors: [String])>(([], []))
    /// Each transaction's start and latency (the replication measurement's timeline).
    let timeline = Mutex<[(start: Double, milliseconds: Double)]>([])
}

/// Closed-loop reference transactions: `tasks` tasks, each moving its own references
/// (`names(task)`, so tasks never conflict) between the two commits, over `keys` in turn,
/// until `seconds` have passed and `done()` holds. Latencies (ms) with their start times,
/// and errors (at most 21 per task), go to the tally.
func referenceLoad(
    _ keys: [PartitionKey], tasks: Int, seconds: Double, names: @escaping @Sendable (Int) -> [RefName],
    until done: @escaping @Sendable () -> Bool = { true }
) async -> Tally {
    let tally = Tally()
    let deadline = now() + seconds
    await withTaskGroup(of: Void.self) { group in
        for task in 0..<tasks {
            group.addTask {
                let names = names(task)
                var current: [PartitionKey: ObjectID] = [:]
                var n = task
                var latencies: [Double] = []
                var samples: [(start: Double, milliseconds: Double)] = []
                var errors: [String] = []
                while now() < deadline || !done() {
                    let key = keys[n % keys.count]
                    n += tasks
                    let old = current[key] ?? .zero
                    let new = old == commits[0] ? commits[1] : commits[0]
                    let t = now()
                    do {
                        _ = try await commit(
                            key,
                            [
                                .updateReferences(
                                    repository(key), names.map { ReferenceUpdate(name: $0, old: old, new: new) })
                            ])
                        latencies.append((now() - t) * 1e3)
                        samples.append((t, latencies.last!))
                        current[key] = new
                    } catch {
                        errors.append("\(error)")
                        if errors.count > 20 { break }
                    }
                }
                tally.lock.withLock {
                    $0.latencies += latencies
                    $0.errors += errors
                }
                tally.timeline.withLock { $0 += samples }
            }
        }
    }
    return tally
}

var created = 0
for partitions in options.partitions {
    // New groups for this size, each with its repository and the pack.
    let t0 = now()
    let keys = try cluster.createGroups(partitions, from: created)
    created += partitions
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (k, key) in keys.enumerated() {
            if k >= 16 { try await group.next() }
            group.addTask {
                _ = try await commit(
                    key,
                    [
                        .createRepository(repository(key), defaultBranch: main),
                        .attachPack(repository(key), .inline(pack: pack, index: [])),
                        .updateReferences(repository(key), [ReferenceUpdate(name: main, old: .zero, new: commits[1])]),
                    ])
            }
        }
        try await group.waitForAll()
    }
    print("\(partitions) partitions: created, elected, repository pushed in \(format(now() - t0, 1)) s")

    for refs in options.refs {
        let start = now()
        let tally = await referenceLoad(keys, tasks: options.inFlight, seconds: options.seconds) { task in
            (0..<refs).map { try! RefName("refs/heads/t\(task)/r\(refs)-\($0)") }
        }
        let elapsed = now() - start
        let (latencies, errors) = tally.lock.withLock { ($0.latencies.sorted(), $0.errors) }
        let perSecond = Double(latencies.count) / elapsed
        print(
            "  \(partitions) partitions, \(refs) ref updates per transaction: \(format(perSecond)) transactions/s, \(format(perSecond * Double(refs))) ref updates/s; p50 \(format(percentile(latencies, 0.5), 1)) ms p99 \(format(percentile(latencies, 0.99), 1)) ms; \(format(perSecond / base.perSecond, 2))x the fdatasync baseline; \(errors.count) errors"
        )
        if let first = errors.first { print("    first error: \(first)") }
    }
}
// Pack attach throughput: one push per size into a new single-member partition.
let storage = cluster.storageNames[0]
let provisioner = PartitionProvisioner(
    host: cluster.hosts[0]!, writer: writers[0], storage: storage, metadata: cluster.hosts[0]!.metadata(of: storage)!)
/// A repository with one commit of `megabytes` MiB of incompressible data: its tip and pack.
func largePack(_ megabytes: Int, _ name: String) throws -> (ObjectID, [UInt8]) {
    let source = root + "/" + name
    var generator = SplitMix64(seed: UInt64(megabytes))
    git(["init", "-q", "-b", "main", source])
    try Data((0..<(megabytes << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        .write(to: URL(fileURLWithPath: source + "/data.bin"))
    git(["-C", source, "add", "."])
    git(["-C", source, "commit", "-q", "-m", "data"])
    let tip = try ObjectID(
        hex: String(decoding: git(["-C", source, "rev-parse", "HEAD"]), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines))
    return (tip, Array(git(["-C", source, "pack-objects", "--revs", "--stdout", "-q"], input: Data("main\n".utf8))))
}
for megabytes in options.packMegabytes {
    let (tip, bytes) = try largePack(megabytes, "pack\(megabytes)")
    // Baseline in the same run: git indexing the same pack by itself, into a bare repository.
    let bare = root + "/bare\(megabytes).git"
    git(["init", "-q", "--bare", bare])
    let g = now()
    git(["--git-dir", bare, "index-pack", "--stdin", "--strict"], input: Data(bytes))
    let gitSeconds = now() - g
    let path = try RelativePath("@hashed/pack/\(megabytes).git")
    let (key, _) = try await provisioner.createRepository(path, defaultBranch: main)
    let t = now()
    _ = try await writers[0].commit(
        key,
        PartitionTransaction([
            .attachPack(path, .inline(pack: bytes, index: [])),
            .updateReferences(path, [ReferenceUpdate(name: main, old: .zero, new: tip)]),
        ]))
    let elapsed = now() - t
    let kind = bytes.count <= PartitionTransaction.maximumInlinePackBytes ? "inline" : "attachment"
    print(
        "  push of a \(format(Double(bytes.count) / 1_048_576, 1)) MiB pack (\(kind), single-member partition): \(format(elapsed * 1e3, 1)) ms, \(format(Double(bytes.count) / 1e6 / elapsed, 1)) MB/s (git index-pack --strict, fsync, commit, apply); git index-pack alone: \(format(gitSeconds * 1e3, 1)) ms, \(format(Double(bytes.count) / 1e6 / gitSeconds, 1)) MB/s; \(format(gitSeconds / elapsed, 2))x"
    )
}

if options.replicateMegabytes > 0 {
    // 100 other partitions with small reference transactions, 16 in flight, with and
    // without one large push replicating to all three nodes.
    let others = try cluster.createGroups(100, from: created)
    created += 100
    for key in others {
        _ = try await commit(
            key,
            [
                .createRepository(repository(key), defaultBranch: main),
                .attachPack(repository(key), .inline(pack: pack, index: [])),
            ])
    }
    /// Elections so far: the sum over the partitions of the highest term any replica knows
    /// (a dormant leader rebuilt from its record is no election; a new term is).
    func elections() async -> UInt64 {
        var total: UInt64 = 0
        for key in others {
            var term: UInt64 = 0
            for host in cluster.hosts.compactMap({ $0 }) {
                if let status = try? await host.status(of: key) { term = max(term, status.term.rawValue) }
            }
            total += term
        }
        return total
    }
    /// Small transactions until `done()` holds (and at least `seconds`); sorted latencies.
    func smallLoad(
        _ run: Int, seconds: Double, until done: @escaping @Sendable () -> Bool
    ) async -> (sorted: [Double], timeline: [(start: Double, milliseconds: Double)]) {
        let tally = await referenceLoad(
            others, tasks: 16, seconds: seconds,
            names: {
                [try! RefName("refs/heads/small\(run)-\($0)")]
            }, until: done)
        let errors = tally.lock.withLock { $0.errors }
        if let first = errors.first { print("    \(errors.count) errors; first: \(first)") }
        return (tally.lock.withLock { $0.latencies.sorted() }, tally.timeline.withLock { $0 })
    }
    let (tip, bytes) = try largePack(options.replicateMegabytes, "replicate")
    // The source repository is the benchmark's own data (hundreds of MB, dirty): written
    // back now, not by the kernel 30 s later in the middle of a measurement.
    let rootHandle = try DiskFile.open(root, .directory)
    try rootHandle.syncFileSystem()
    try rootHandle.close()
    func summary(_ l: [Double]) -> String {
        "\(l.count) transactions, p50 \(format(percentile(l, 0.5), 1)) ms, p99 \(format(percentile(l, 0.99), 1)) ms, max \(format(l.last ?? 0, 1)) ms"
    }
    // When the slow ones happened, by second.
    func bySecond(_ samples: [(start: Double, milliseconds: Double)], from start: Double) -> String {
        var seconds: [Int: [Double]] = [:]
        for sample in samples { seconds[Int(sample.start - start), default: []].append(sample.milliseconds) }
        return seconds.keys.sorted().map { "\($0): \(format(percentile(seconds[$0]!.sorted(), 0.99), 0))" }
            .joined(separator: ", ") + " ms"
    }

    let electionsBefore = await elections()
    let quietStart = now()
    let (quiet, quietTimeline) = await smallLoad(1, seconds: options.seconds) { true }
    print(
        "  small transactions on 100 other three-member partitions, 16 in flight, without a push: \(summary(quiet)); elections: \(await elections() - electionsBefore)"
    )
    print("    p99 by second: " + bySecond(quietTimeline, from: quietStart))

    /// Pushes the large pack into `key` while the small load runs; prints what it saw.
    func measurePush(
        _ key: PartitionKey, _ path: RelativePath, run: Int, replicas: [Int], what: String
    ) async throws
        -> [Double]
    {
        let electionsBefore = await elections()
        let pushed = Atomic<Bool>(false)
        let pushStart = now()
        async let push: (Double, LogIndex) = {
            let index = try await commit(
                key,
                [
                    .attachPack(path, .inline(pack: bytes, index: [])),
                    .updateReferences(path, [ReferenceUpdate(name: main, old: .zero, new: tip)]),
                ])
            let elapsed = now() - pushStart
            pushed.store(true, ordering: .releasing)
            return (elapsed, index)
        }()
        let (busy, timeline) = await smallLoad(run, seconds: 1) { pushed.load(ordering: .acquiring) }
        let (pushSeconds, pushIndex) = try await push
        let newElections = await elections() - electionsBefore
        try await cluster.waitUntil("every replica applied the push", within: 120) { @Sendable in
            replicas.allSatisfy {
                (cluster.machines.existing(
                    node: $0, replica: ReplicaKey(partition: key, member: MemberID(UInt64($0 + 1))))?
                    .appliedIndex ?? .zero) >= pushIndex
            }
        }
        print(
            "  push of a \(format(Double(bytes.count) / 1_048_576, 1)) MiB pack to a \(what) partition: committed in \(format(pushSeconds, 2)) s (\(format(Double(bytes.count) / 1e6 / pushSeconds, 1)) MB/s)"
        )
        print("    small transactions meanwhile: \(summary(busy)); elections: \(newElections)")
        print("    p99 by second of the push: " + bySecond(timeline, from: pushStart))
        print("    p99 during / without: \(format(percentile(busy, 0.99) / max(percentile(quiet, 0.99), 0.001), 2))x")
        return busy
    }

    // The same push without replication (a single-member partition on node 0): what the
    // push itself costs (git validation, storing the attachment), apart from moving it.
    let singlePath = try RelativePath("@hashed/single/large.git")
    let (single, _) = try await provisioner.createRepository(singlePath, defaultBranch: main)
    _ = try await measurePush(single, singlePath, run: 2, replicas: [0], what: "single-member")

    let large = try cluster.createGroups(1, from: created)[0]
    created += 1
    let path = repository(large)
    _ = try await commit(large, [.createRepository(path, defaultBranch: main)])
    let received = attachments.map(\.counters.received).reduce(0, +)
    _ = try await measurePush(large, path, run: 3, replicas: [0, 1, 2], what: "three-member")
    print(
        "    \(attachments.map(\.counters.received).reduce(0, +) - received) members received it over the bulk path (git index-pack, store, bulk transfer to a majority, commit, apply)"
    )
}

cluster.stopAll()
for checkpointer in checkpointers { checkpointer.stop() }
try? FileManager.default.removeItem(atPath: options.directory)

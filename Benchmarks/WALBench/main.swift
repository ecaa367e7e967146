// Shared WAL benchmark (issue 4): many groups appending 256-byte entries concurrently through
// one SharedLog, against "one pwrite + fdatasync per entry" measured in the same run; then
// recovery (replay) speed of a large log.
//
//   swift run -c release WALBench [--groups 1000] [--in-flight 64,256,1000] [--seconds 5]
//                                 [--recovery-mib 1024] [--dir bench-data] [--backend io_uring|pwritev]
//
// A program, not a test: the figures go to docs/BENCHMARKS.md.

import BenchSupport
import RaftConsensus
import RaftEngine
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

struct Options {
    var groups = 1000
    var inFlight = [64, 256, 1000]
    var seconds = 5.0
    var recoveryMiB = 1024
    var directory = "bench-data"
    var backend = IOBackendChoice.current.kind
    var entrySize = 256

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var rest = arguments[...]
        func value(_ flag: String) -> String {
            guard let next = rest.popFirst() else { fail("\(flag) needs a value") }
            return next
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--groups":
                guard let n = Int(value(flag)), n >= 1, n <= 1_000_000 else { fail("--groups takes 1...1000000") }
                options.groups = n
            case "--in-flight":
                let list = value(flag).split(separator: ",").compactMap { Int($0) }
                guard !list.isEmpty, list.allSatisfy({ $0 >= 1 && $0 <= 100_000 }) else {
                    fail("--in-flight takes a list")
                }
                options.inFlight = list
            case "--seconds":
                guard let s = Double(value(flag)), s > 0, s <= 600 else { fail("--seconds takes 0 < S <= 600") }
                options.seconds = s
            case "--recovery-mib":
                guard let m = Int(value(flag)), m >= 0, m <= 16384 else { fail("--recovery-mib takes 0...16384") }
                options.recoveryMiB = m
            case "--dir": options.directory = value(flag)
            case "--backend":
                guard let b = IOBackendKind(rawValue: value(flag)) else { fail("--backend takes io_uring or pwritev") }
                options.backend = b
            case "--quick":
                options.seconds = 2
                options.inFlight = [256]
                options.recoveryMiB = 256
            case "-h", "--help":
                print(
                    "usage: WALBench [--groups N] [--in-flight 64,256,1000] [--seconds S] [--recovery-mib M] [--dir D] [--backend B] [--quick]"
                )
                exit(0)
            default: fail("unknown option \(flag) (try --help)")
            }
        }
        return options
    }
}

func fail(_ message: String) -> Never { BenchSupport.fail("WALBench", message) }

func freshDirectory(_ path: String) {
    if let names = try? FileSystem.list(path) {
        for name in names { unlink("\(path)/\(name)") }
    }
    mkdir(path, 0o755)
}

/// One pwrite + one fdatasync per entry, one writer: what a log without group commit does.
func baseline(_ options: Options) throws -> (perSecond: Double, p50: Double, p99: Double) {
    try measureSyncBaseline(
        path: "\(options.directory)/baseline.log", recordBytes: options.entrySize + 40,
        seconds: min(options.seconds, 3))
}

/// Closed loop: `inFlight` appends outstanding at all times over all `groups`: slot `s`
/// owns the groups `s, s + inFlight, s + 2·inFlight, …` and cycles through them, issuing
/// the next append as soon as its previous one is durable (so each group's indexes stay in
/// order with one append outstanding per group at most).
final class Load: @unchecked Sendable {
    let log: SharedLog
    let groups: Int
    let inFlight: Int
    let payload: [UInt8]
    let deadline: Double
    let state = Mutex<(next: [UInt64], cursor: [Int], latencies: [Double], outstanding: Int, errors: Int)>(
        ([], [], [], 0, 0))

    init(log: SharedLog, groups: Int, inFlight: Int, entrySize: Int, deadline: Double) {
        self.log = log
        self.groups = groups
        self.inFlight = inFlight
        self.payload = [UInt8](repeating: 0x5A, count: entrySize)
        self.deadline = deadline
        state.withLock {
            $0.next = Array(repeating: 0, count: groups)
            $0.cursor = Array(repeating: 0, count: inFlight)
        }
    }

    func issue(slot: Int) {
        let owned = (groups - slot + inFlight - 1) / inFlight
        let (group, index): (Int, UInt64) = state.withLock {
            let group = slot + ($0.cursor[slot] % owned) * inFlight
            $0.cursor[slot] += 1
            $0.next[group] += 1
            $0.outstanding += 1
            return (group, $0.next[group])
        }
        let started = now()
        let write = GroupWrite(
            group: GroupID(UInt64(group + 2)),
            entries: [WALEntry(term: Term(1), index: LogIndex(index), payload: payload)])
        log.append([write]) { result in
            let finishedAt = now()
            let again: Bool = self.state.withLock {
                $0.outstanding -= 1
                if case .failure = result {
                    $0.errors += 1
                    return false
                }
                $0.latencies.append((finishedAt - started) * 1e6)
                return finishedAt < self.deadline
            }
            if again { self.issue(slot: slot) }
        }
    }
}

/// A new, empty WAL in `<dir>/wal` on the chosen backend; any failure ends the benchmark.
func freshLog(_ options: Options) throws -> (SharedLog, String) {
    let path = "\(options.directory)/wal"
    freshDirectory(path)
    var walOptions = SharedLog.Options()
    walOptions.ioBackend = options.backend
    walOptions.onFatal = { error in fail("WAL stopped: \(error)") }
    return (try SharedLog(directory: path, options: walOptions), path)
}

func groupCommit(
    _ options: Options, inFlight: Int
) throws -> (perSecond: Double, fsyncs: Double, perFsync: Double, p50: Double, p99: Double) {
    let (log, path) = try freshLog(options)
    let slots = min(inFlight, options.groups)
    let start = now()
    let load = Load(
        log: log, groups: options.groups, inFlight: slots, entrySize: options.entrySize,
        deadline: start + options.seconds)
    for slot in 0..<slots { load.issue(slot: slot) }
    while load.state.withLock({ $0.outstanding }) > 0 { usleep(2000) }
    let elapsed = now() - start
    let stats = log.statistics
    log.close()
    var latencies = load.state.withLock { $0.latencies }
    latencies.sort()
    if load.state.withLock({ $0.errors }) > 0 { fail("appends failed") }
    freshDirectory(path)
    return (
        Double(latencies.count) / elapsed, Double(stats.fdatasyncs) / elapsed,
        Double(stats.entries) / Double(max(stats.fdatasyncs, 1)), percentile(latencies, 0.5),
        percentile(latencies, 0.99)
    )
}

/// The node host's pattern: every turn is ONE append carrying one entry for each group of
/// its half of the groups; two turns in flight (while one is durable-pending, the next is
/// assembled), the next turn issued when one completes.
func hostTurns(
    _ options: Options
) throws -> (perSecond: Double, fsyncs: Double, perFsync: Double, p50: Double, p99: Double) {
    let (log, path) = try freshLog(options)
    let payload = [UInt8](repeating: 0x5A, count: options.entrySize)
    let halves = [Array(stride(from: 0, to: options.groups, by: 2)), Array(stride(from: 1, to: options.groups, by: 2))]
    let state = Mutex<(next: [UInt64], latencies: [Double], entries: Int, outstanding: Int)>(
        (Array(repeating: 0, count: options.groups), [], 0, 0))
    let deadline = now() + options.seconds
    let start = now()
    @Sendable func turn(_ half: Int) {
        let writes: [GroupWrite] = state.withLock { s in
            s.outstanding += 1
            return halves[half].map { g in
                s.next[g] += 1
                return GroupWrite(
                    group: GroupID(UInt64(g + 2)),
                    entries: [WALEntry(term: Term(1), index: LogIndex(s.next[g]), payload: payload)])
            }
        }
        let issued = now()
        log.append(writes) { result in
            if case .failure(let error) = result { fail("append failed: \(error)") }
            let done = now()
            let again: Bool = state.withLock { s in
                s.outstanding -= 1
                s.latencies.append((done - issued) * 1e6)
                s.entries += writes.count
                return done < deadline
            }
            if again { turn(half) }
        }
    }
    turn(0)
    turn(1)
    while state.withLock({ $0.outstanding }) > 0 { usleep(2000) }
    let elapsed = now() - start
    let stats = log.statistics
    log.close()
    freshDirectory(path)
    let (latencies, entries) = state.withLock { ($0.latencies.sorted(), $0.entries) }
    return (
        Double(entries) / elapsed, Double(stats.fdatasyncs) / elapsed,
        Double(stats.entries) / Double(max(stats.fdatasyncs, 1)), percentile(latencies, 0.5),
        percentile(latencies, 0.99)
    )
}

func recovery(
    _ options: Options
) throws -> (
    bytes: Int, logBytes: UInt64, seconds: Double, warmSeconds: Double, records: Int, cold: Bool
) {
    let path = "\(options.directory)/recovery"
    freshDirectory(path)
    var walOptions = SharedLog.Options()
    walOptions.ioBackend = options.backend
    walOptions.maxSegments = 1 << 20  // keep everything: this measures replay
    walOptions.cacheBytes = 0
    var logBytes: UInt64 = 0
    do {
        let log = try SharedLog(directory: path, options: walOptions)
        let payload = [UInt8](repeating: 0x33, count: options.entrySize)
        var next = [UInt64](repeating: 0, count: options.groups)
        let target = UInt64(options.recoveryMiB) << 20
        while log.statistics.bytesWritten < target {
            var writes: [GroupWrite] = []
            for g in 0..<options.groups {
                next[g] += 1
                writes.append(
                    GroupWrite(
                        group: GroupID(UInt64(g + 2)),
                        entries: [WALEntry(term: Term(1), index: LogIndex(next[g]), payload: payload)]))
            }
            try log.append(writes)
        }
        logBytes = log.statistics.bytesWritten
        log.close()
    }
    // Cold cache when the kernel lets us drop it (root on a real kernel); warm otherwise.
    sync()
    let cold =
        (try? DiskFile.open("/proc/sys/vm/drop_caches", .init(flags: O_WRONLY))).map { file -> Bool in
            let three = Array("3\n".utf8)
            return (try? three.withUnsafeBytes { try file.write(toAbsoluteOffset: 0, $0) }) != nil
        } ?? false
    let coldLog = try SharedLog(directory: path, options: walOptions)
    let coldReport = coldLog.recoveryReport
    coldLog.close()
    // Again, now that the segments are in the page cache: the CPU cost of replay alone.
    let warmLog = try SharedLog(directory: path, options: walOptions)
    let warmReport = warmLog.recoveryReport
    warmLog.close()
    freshDirectory(path)
    return (coldReport.bytesScanned, logBytes, coldReport.seconds, warmReport.seconds, coldReport.records, cold)
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
mkdir(options.directory, 0o755)
print(
    "Shared WAL benchmark: \(options.groups) groups, \(options.entrySize) B entries, backend \(options.backend), \(options.seconds) s per run"
)
print("command: \(CommandLine.arguments.joined(separator: " "))")
print("")
do {
    let base = try baseline(options)
    print(
        "baseline, one pwrite + fdatasync per entry: \(format(base.perSecond)) appends/s, p50 \(format(base.p50)) µs, p99 \(format(base.p99)) µs"
    )
    print("")
    print("in flight  appends/s   fsyncs/s  entries/fsync  p50 µs   p99 µs   × baseline")
    for inFlight in options.inFlight {
        let r = try groupCommit(options, inFlight: inFlight)
        let line = [
            "\(inFlight)".padded(11), format(r.perSecond).padded(12), format(r.fsyncs).padded(10),
            format(r.perFsync, 1).padded(15), format(r.p50).padded(9), format(r.p99).padded(9),
            format(r.perSecond / base.perSecond, 1),
        ]
        print(line.joined())
    }
    let h = try hostTurns(options)
    print("")
    print(
        "host turns: one append per turn carrying one entry for each of \(options.groups / 2) groups, 2 turns in flight"
    )
    print(
        "           \(format(h.perSecond)) appends/s, \(format(h.fsyncs)) fsyncs/s, \(format(h.perFsync, 1)) entries/fsync, turn latency p50 \(format(h.p50)) µs, p99 \(format(h.p99)) µs, \(format(h.perSecond / base.perSecond, 1)) × baseline"
    )
    if options.recoveryMiB > 0 {
        print("")
        let r = try recovery(options)
        let gb = Double(r.bytes) / 1e9
        let logGB = Double(r.logBytes) / 1e9
        print(
            "recovery: \(r.records) records, \(format(logGB, 2)) GB of log in \(format(gb, 2)) GB of segment files"
        )
        print(
            "  \(r.cold ? "cold (page cache dropped)" : "first open (page cache NOT dropped)"): \(format(r.seconds, 3)) s = \(format(logGB / r.seconds, 2)) GB/s of log"
        )
        print(
            "  warm (segments in page cache): \(format(r.warmSeconds, 3)) s = \(format(logGB / r.warmSeconds, 2)) GB/s of log"
        )
    }
} catch {
    fail("\(error)")
}

// WAL I/O benchmark: N × 4 KiB appends per batch + one fdatasync, through io_uring, through
// the pwritev fallback, and as the baseline "one pwrite + fdatasync per append", in one run.
//
//   swift run -c release WALIOBench [--seconds S] [--rounds R] [--batches 1,16,64] [--dir PATH] [--in-flight K]
//
// Prints appends/s, MB/s, fdatasyncs/s, batch latency percentiles and ratios against the
// baseline measured in the same run. A program, not a test: numbers go to docs/BENCHMARKS.md.

import BenchSupport
import CRaftIO
import RaftEngine

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

struct Options {
    var seconds = 3.0
    /// Modes run interleaved, `rounds` times each, so a slow patch of the disk hits them all.
    var rounds = 3
    var batchSizes = [1, 16, 64]
    var directory = "bench-data"
    var inFlight = 2
    var appendSize = 4096
    var segmentSize: UInt64 = 256 << 20

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var rest = arguments[...]
        func value(_ flag: String) -> String {
            guard let next = rest.popFirst() else { fail("\(flag) needs a value") }
            return next
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--seconds":
                guard let s = Double(value(flag)), s > 0, s <= 600 else { fail("--seconds takes 0 < S <= 600") }
                options.seconds = s
            case "--batches":
                let sizes = value(flag).split(separator: ",").compactMap { Int($0) }
                guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 && $0 <= 1024 }) else {
                    fail("--batches takes a comma-separated list of sizes in 1...1024")
                }
                options.batchSizes = sizes
            case "--rounds":
                guard let r = Int(value(flag)), r >= 1, r <= 20 else { fail("--rounds takes 1...20") }
                options.rounds = r
            case "--dir": options.directory = value(flag)
            case "--in-flight":
                guard let k = Int(value(flag)), k >= 1, k <= 8 else { fail("--in-flight takes 1...8") }
                options.inFlight = k
            case "--quick":
                options.seconds = 1
                options.rounds = 2
                options.batchSizes = [1, 64]
            case "-h", "--help":
                print(
                    "usage: WALIOBench [--seconds S] [--rounds R] [--batches 1,16,64] [--dir PATH] [--in-flight K] [--quick]"
                )
                exit(0)
            default: fail("unknown option \(flag) (try --help)")
            }
        }
        return options
    }
}

func fail(_ message: String) -> Never { BenchSupport.fail("WALIOBench", message) }

/// Appends to preallocated segment files, starting a new one when the current one is full
/// (as a WAL does), and removing the old one so the benchmark's disk use stays bounded.
final class SegmentCursor {
    let directory: String
    let segmentSize: UInt64
    private(set) var file: DiskFile
    private(set) var offset: UInt64 = 0
    private var number = 0

    init(directory: String, segmentSize: UInt64) throws {
        self.directory = directory
        self.segmentSize = segmentSize
        self.file = try SegmentCursor.create(directory, 0, segmentSize)
    }

    private static func create(_ directory: String, _ number: Int, _ size: UInt64) throws -> DiskFile {
        let path = "\(directory)/segment-\(number)"
        unlink(path)
        let file = try DiskFile.open(path, .createNew)
        try file.allocate(offset: 0, length: size)
        try file.sync()
        try DiskFile.syncDirectory(directory)
        return file
    }

    /// Whether reserving `length` more bytes starts a new segment (closing this one).
    func wouldRotate(_ length: UInt64) -> Bool { offset + length > segmentSize }

    /// The offset for `length` more bytes, rolling to a new segment when needed.
    func reserve(_ length: UInt64) throws -> UInt64 {
        if offset + length > segmentSize {
            try file.close()
            unlink("\(directory)/segment-\(number)")
            number += 1
            file = try SegmentCursor.create(directory, number, segmentSize)
            offset = 0
        }
        defer { offset += length }
        return offset
    }

    func removeAll() {
        try? file.close()
        unlink("\(directory)/segment-\(number)")
    }
}

struct Result {
    var mode: String
    var batch: Int
    var appends: Int
    var syncs: Int
    var seconds: Double
    var latenciesMicros: [Double]
    var appendSize: Int

    var appendsPerSecond: Double { Double(appends) / seconds }
    var megabytesPerSecond: Double { Double(appends * appendSize) / seconds / 1e6 }
    var syncsPerSecond: Double { Double(syncs) / seconds }

    func percentile(_ p: Double) -> Double { BenchSupport.percentile(latenciesMicros.sorted(), p) }
}

/// One pwrite + one fdatasync per append: what a naive log does.
func runBaseline(_ options: Options, payload: UnsafeRawBufferPointer) throws -> Result {
    let cursor = try SegmentCursor(directory: options.directory, segmentSize: options.segmentSize)
    defer { cursor.removeAll() }
    var latencies: [Double] = []
    var appends = 0
    let start = now()
    while now() - start < options.seconds {
        let t0 = now()
        let offset = try cursor.reserve(UInt64(payload.count))
        try cursor.file.write(toAbsoluteOffset: offset, payload)
        try cursor.file.syncData()
        latencies.append((now() - t0) * 1e6)
        appends += 1
    }
    return Result(
        mode: "pwrite+fdatasync each", batch: 1, appends: appends, syncs: appends, seconds: now() - start,
        latenciesMicros: latencies, appendSize: payload.count)
}

/// Batches of `batch` appends linked to one fdatasync, `inFlight` batches at a time.
func runBatched(
    _ options: Options, backend: IOBackendKind, batch: Int, inFlight: Int, payload: UnsafeRawBufferPointer
) throws -> Result {
    let cursor = try SegmentCursor(directory: options.directory, segmentSize: options.segmentSize)
    defer { cursor.removeAll() }
    let writer = try BatchWriter(backend: backend, depth: max(64, (batch + 1) * inFlight), maxBatchesInFlight: inFlight)
    var latencies: [Double] = []
    var appends = 0
    var syncs = 0
    var pending: [(ticket: BatchTicket, started: Double, file: DiskFile)] = []
    let start = now()
    func completeOldest() throws {
        let oldest = pending.removeFirst()
        try writer.wait(for: oldest.ticket)
        latencies.append((now() - oldest.started) * 1e6)
        appends += batch
        syncs += 1
    }
    while now() - start < options.seconds {
        if pending.count == inFlight { try completeOldest() }
        let t0 = now()
        let bytes = UInt64(batch * payload.count)
        // Never leave a batch in flight against a segment that is being replaced.
        if cursor.wouldRotate(bytes) {
            while !pending.isEmpty { try completeOldest() }
        }
        let first = try cursor.reserve(bytes)
        let writes = (0..<batch).map {
            PositionedWrite(offset: first + UInt64($0 * payload.count), bytes: payload)
        }
        pending.append((try writer.submit(cursor.file, writes, sync: true), t0, cursor.file))
    }
    while !pending.isEmpty { try completeOldest() }
    let label = inFlight == 1 ? "\(backend)" : "\(backend) x\(inFlight) in flight"
    return Result(
        mode: label, batch: batch, appends: appends, syncs: syncs, seconds: now() - start,
        latenciesMicros: latencies, appendSize: payload.count)
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
mkdir(options.directory, 0o755)
let payloadBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: options.appendSize, alignment: 4096)
for i in 0..<options.appendSize { payloadBuffer[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
let payload = UnsafeRawBufferPointer(payloadBuffer)

var uname = utsname()
Glibc.uname(&uname)
let kernel = withUnsafeBytes(of: uname.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
let uringProbe = IOBackendChoice.probeIOUring()
print(
    "WAL I/O benchmark: \(options.appendSize) B appends, \(options.seconds) s per mode in \(options.rounds) interleaved rounds, directory \(options.directory)"
)
print(
    "kernel \(kernel), io_uring: \(uringProbe.map { "unavailable (\($0))" } ?? "available"), cores \(sysconf(Int32(_SC_NPROCESSORS_ONLN)))"
)
print("command: \(CommandLine.arguments.joined(separator: " "))")
print("")

do {
    // Every mode, in a fixed order; each round runs them all once for seconds / rounds.
    var modes: [(Options) throws -> Result] = [{ try runBaseline($0, payload: payload) }]
    for batch in options.batchSizes {
        if uringProbe == nil {
            modes.append { try runBatched($0, backend: .ioUring, batch: batch, inFlight: 1, payload: payload) }
            if options.inFlight > 1 {
                let inFlight = options.inFlight
                modes.append {
                    try runBatched($0, backend: .ioUring, batch: batch, inFlight: inFlight, payload: payload)
                }
            }
        }
        modes.append { try runBatched($0, backend: .fallback, batch: batch, inFlight: 1, payload: payload) }
    }
    var perRound = options
    perRound.seconds = options.seconds / Double(options.rounds)
    var results: [Result?] = Array(repeating: nil, count: modes.count)
    for _ in 0..<options.rounds {
        for (i, mode) in modes.enumerated() {
            let r = try mode(perRound)
            if var sum = results[i] {
                sum.appends += r.appends
                sum.syncs += r.syncs
                sum.seconds += r.seconds
                sum.latenciesMicros += r.latenciesMicros
                results[i] = sum
            } else {
                results[i] = r
            }
        }
    }
    let totals = results.map { $0! }
    let baseline = totals[0]
    let header = [
        "mode".padded(28), "batch".padded(7), "appends/s".padded(11), "MB/s".padded(9), "fsyncs/s".padded(10),
    ]
    print((header + ["p50 µs".padded(9), "p99 µs".padded(9), "× baseline"]).joined())
    for r in totals {
        let columns: [String] = [
            r.mode.padded(28), "\(r.batch)".padded(7), format(r.appendsPerSecond).padded(11),
            format(r.megabytesPerSecond, 1).padded(9), format(r.syncsPerSecond).padded(10),
            format(r.percentile(0.5)).padded(9), format(r.percentile(0.99)).padded(9),
            format(r.appendsPerSecond / baseline.appendsPerSecond, 2),
        ]
        print(columns.joined())
    }
    print("")
    print("batch latency = submit to durable (all appends of the batch and their fdatasync done)")
} catch {
    fail("\(error)")
}
payloadBuffer.deallocate()

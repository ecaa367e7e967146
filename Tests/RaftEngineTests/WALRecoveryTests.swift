import Foundation
import RaftConsensus
import Synchronization
import Testing

@testable import RaftEngine

/// Builds a log of several batches over two or more segments and returns what it holds.
private func buildPristineLog(at path: String, options: SharedLog.Options) throws -> [GroupID: [WALEntry]] {
    var expected: [GroupID: [WALEntry]] = [:]
    let log = try SharedLog(directory: path, options: options)
    defer { log.close() }
    let filler = String(repeating: "p", count: 700)
    for round in 1...24 {
        var writes: [GroupWrite] = []
        for g in 2...4 {
            let e = entry(UInt64(round), term: 1, "g\(g)r\(round)" + (g == 2 ? filler : ""))
            writes.append(GroupWrite(group: GroupID(UInt64(g)), entries: [e]))
            expected[GroupID(UInt64(g)), default: []].append(e)
        }
        try log.append(writes)
    }
    return expected
}

/// Copies every file of `from` into a fresh directory.
private func copyDirectory(_ from: String) throws -> TemporaryDirectory {
    let copy = try TemporaryDirectory("raftd-wal-copy")
    for name in try FileManager.default.contentsOfDirectory(atPath: from) {
        try FileManager.default.copyItem(atPath: "\(from)/\(name)", toPath: copy.file(name))
    }
    return copy
}

/// The batches of a segment file, as (offset, end) pairs.
private func batchBounds(_ path: String) throws -> (batches: [(Int, Int)], dataEnd: Int) {
    let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    var bounds: [(Int, Int)] = []
    var expected: UInt64?
    let salt = try data.withUnsafeBytes { try SegmentHeader.decode($0).get().salt }
    let outcome = data.withUnsafeBytes { bytes in
        SegmentScanner.scan(bytes, salt: salt, expected: &expected) { batch, _ in
            bounds.append((batch.offset, batch.offset + WALFormat.batchHeaderSize + batch.header.bodyLength))
        }
    }
    guard case .clean(let end) = outcome else {
        throw WALError.corrupt(file: path, offset: 0, reason: "pristine log damaged")
    }
    return (bounds, end)
}

private func openLog(_ path: String, _ options: SharedLog.Options) -> Result<SharedLog, WALError> {
    do {
        return .success(try SharedLog(directory: path, options: options))
    } catch {
        return .failure(error)
    }
}

extension WALError {
    /// The file a corruption or foreign-file error names.
    fileprivate var namedFile: String? {
        switch self {
        case .corrupt(let file, _, _), .foreignFile(let file, _): file
        default: nil
        }
    }
}

@Suite("WAL: recovery")
struct WALRecoveryTests {
    @Test("WAL: every single-byte corruption is detected: an error, or the torn last batch cut off; never wrong data")
    func singleByteCorruption() throws {
        let pristine = try TemporaryDirectory("raftd-wal-pristine")
        defer { pristine.remove() }
        var options = testLogOptions(segmentSize: 16 << 10)
        options.maxBatchBytes = 4 << 10
        let expected = try buildPristineLog(at: pristine.path, options: options)
        let segments = try FileSystem.list(pristine.path)
        #expect(segments.count >= 2, "the test needs several segments: \(segments)")
        let lastSegment = segments.last!
        let lastBounds = try batchBounds(pristine.file(lastSegment))
        let lastBatchStart = lastBounds.batches.last?.0 ?? Int.max

        var outcomes = (errors: 0, tornTails: 0)
        for name in segments {
            let bounds = try batchBounds(pristine.file(name))
            // Every region: the segment header, each batch, and some of the zero tail.
            var positions = Array(stride(from: 0, to: bounds.dataEnd, by: 13))
            positions += [bounds.dataEnd, bounds.dataEnd + 100, (16 << 10) - 1]
            for position in positions {
                let copy = try copyDirectory(pristine.path)
                defer { copy.remove() }
                let handle = try FileHandle(forUpdating: URL(fileURLWithPath: copy.file(name)))
                try handle.seek(toOffset: UInt64(position))
                let original = try handle.read(upToCount: 1)![0]
                try handle.seek(toOffset: UInt64(position))
                handle.write(Data([original ^ 0x41]))
                try handle.close()

                let isLastSegment = name == lastSegment
                let inLastBatchOrTail = isLastSegment && position >= lastBatchStart
                switch openLog(copy.path, options) {
                case .success(let log):
                    defer { log.close() }
                    #expect(inLastBatchOrTail, "\(name)@\(position): damage outside the tail was accepted")
                    #expect(log.recoveryReport.tornTail != nil, "\(name)@\(position): damage not reported")
                    outcomes.tornTails += 1
                    // Whatever is returned is exactly what was written; only the last batch may be gone.
                    for (group, entries) in expected {
                        let last = log.lastIndex(of: group)
                        #expect(last.rawValue >= UInt64(entries.count - 1))
                        let read = try log.entries(of: group, from: LogIndex(1), to: last.next, maxBytes: .max)
                        #expect(
                            read == Array(entries.prefix(read.count)), "\(name)@\(position): wrong data for \(group)")
                    }
                case .failure(let error):
                    #expect(
                        !inLastBatchOrTail || position < WALFormat.segmentHeaderSize, "\(name)@\(position): \(error)")
                    #expect(error.namedFile?.hasSuffix(name) == true, "\(name)@\(position): \(error)")
                    outcomes.errors += 1
                }
            }
        }
        #expect(outcomes.errors > 0 && outcomes.tornTails > 0)
    }

    @Test("WAL: a torn tail is cut off, later appends follow it, and a second recovery agrees")
    func tornTail() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions()
        _ = try buildPristineLog(at: dir.path, options: options)
        let segment = try FileSystem.list(dir.path).last!
        let bounds = try batchBounds(dir.file(segment))
        // Half of a new batch: header plus garbage, as a crash during the write leaves it.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: dir.file(segment)))
        // A valid header (the segment's salt, the next sequence) over a body that never made it.
        let salt = try Data(contentsOf: URL(fileURLWithPath: dir.file(segment))).withUnsafeBytes {
            try SegmentHeader.decode($0).get().salt
        }
        var header = [UInt8](repeating: 0, count: WALFormat.batchHeaderSize)
        header.withUnsafeMutableBytes {
            BatchHeader(sequence: 25, bodyLength: 4096, recordCount: 3).encode(into: $0.baseAddress!, salt: salt)
        }
        try handle.seek(toOffset: UInt64(bounds.dataEnd))
        handle.write(Data(header + [UInt8](repeating: 0xEE, count: 1000)))
        try handle.close()

        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            let torn = try #require(log.recoveryReport.tornTail)
            #expect(torn.offset == bounds.dataEnd)
            #expect(torn.bytes >= 1000)
            #expect(log.lastIndex(of: GroupID(3)) == LogIndex(24))
            try log.append([GroupWrite(group: GroupID(3), entries: [entry(25, term: 1)])])
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        #expect(log.recoveryReport.tornTail == nil)
        #expect(log.lastIndex(of: GroupID(3)) == LogIndex(25))
        #expect(
            try log.entries(of: GroupID(3), from: LogIndex(25), to: LogIndex(26), maxBytes: .max) == [
                entry(25, term: 1)
            ])
    }
}

@Suite("WAL: inspector")
struct WALInspectorTests {
    @Test("WAL: verify counts what was written, reports a torn tail without repairing it, and finds corruption")
    func verify() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions()
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            try log.append([GroupWrite(group: GroupID(2), entries: (1...5).map { entry($0, term: 1) })])
            try log.append([
                GroupWrite(
                    group: GroupID(3), entries: [entry(1, term: 1)],
                    hardState: HardState(term: Term(1), vote: MemberID(1), commit: LogIndex(1)))
            ])
            try log.compact(group: GroupID(2), upTo: LogIndex(2), term: Term(1))
        }
        var seen: [WALRecordType] = []
        let healthy = try WALInspector(directory: dir.path).scan { seen.append($0.type) }
        #expect(healthy.isHealthy && healthy.tornTail == nil)
        #expect(healthy.batches == 3 && healthy.records == 8 && healthy.groups == 2 && healthy.entries == 4)
        #expect(seen == [.entry, .entry, .entry, .entry, .entry, .entry, .hardState, .compact])

        let segment = dir.file(try FileSystem.list(dir.path).last!)
        let before = try Data(contentsOf: URL(fileURLWithPath: segment))
        // Garbage after the last batch: a torn tail, reported and left alone.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: segment))
        try handle.seek(toOffset: 4000)
        handle.write(Data([1, 2, 3]))
        try handle.close()
        let torn = try WALInspector(directory: dir.path).scan()
        #expect(torn.isHealthy && torn.tornTail != nil)
        #expect(try Data(contentsOf: URL(fileURLWithPath: segment)).count == before.count)

        // A flipped byte in the first batch, with valid batches after it: corruption.
        let damaged = try FileHandle(forUpdating: URL(fileURLWithPath: segment))
        try damaged.seek(toOffset: 120)
        damaged.write(Data([0xFF]))
        try damaged.close()
        let corrupt = try WALInspector(directory: dir.path).scan()
        #expect(!corrupt.isHealthy)
    }
}

@Suite("WAL: review fixes")
struct WALReviewFixTests {
    @Test("WAL: a segment missing from the middle is corruption, not a torn tail")
    func missingSegment() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = testLogOptions(segmentSize: 16 << 10)
        options.maxBatchBytes = 4 << 10
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            let payload = String(repeating: "m", count: 3000)
            for i in 1...30 {
                try log.append([GroupWrite(group: GroupID(2), entries: [entry(UInt64(i), term: 1, payload)])])
            }
        }
        let names = try FileSystem.list(dir.path)
        try #require(names.count >= 3)
        try FileSystem.removeFile(dir.file(names[1]))
        switch openLog(dir.path, options) {
        case .success(let log):
            log.close()
            Issue.record("opened a log with a segment missing")
        case .failure(let error):
            #expect("\(error)".contains("segment missing"), "\(error)")
        }
    }

    @Test("WAL: reads racing with compaction never report live entries as corrupt")
    func readsDuringCompaction() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = testLogOptions(segmentSize: 32 << 10)
        options.maxBatchBytes = 8 << 10
        options.maxSegments = 2
        options.cacheBytes = 0  // every read goes to disk
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        let idle = GroupID(9)
        let idleEntries = (1...5).map { entry(UInt64($0), term: 1) }
        try await log.append([GroupWrite(group: idle, entries: idleEntries)])
        let payload = String(repeating: "w", count: 1500)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for i in 1...300 {
                    try await log.append([GroupWrite(group: GroupID(2), entries: [entry(UInt64(i), term: 1, payload)])])
                    try log.compact(group: GroupID(2), upTo: LogIndex(UInt64(i)), term: Term(1))
                }
            }
            for _ in 0..<2 {
                tasks.addTask {
                    for _ in 0..<400 {
                        let read = try log.entries(of: idle, from: LogIndex(1), to: LogIndex(6), maxBytes: .max)
                        #expect(read == idleEntries)
                        await Task.yield()
                    }
                }
            }
            try await tasks.waitForAll()
        }
        #expect(log.statistics.bytesRewritten > 0, "the idle group was never rewritten: the race was not exercised")
    }

    @Test("WAL: a failed fdatasync answers every waiter, also those of the batch encoded meanwhile")
    func everyWaiterAnswered() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try FaultyDevice(backend: availableBackends[0])
        var options = testLogOptions(segmentSize: 256 << 10)
        options.makeDevice = { _ in device }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        device.fault.withLock { $0 = .syncFails(EIO) }
        let answered = Mutex(0)
        let total = 200
        for g in 0..<total {
            log.append([GroupWrite(group: GroupID(UInt64(g + 2)), entries: [entry(1, term: 1)])]) { result in
                if case .failure = result { answered.withLock { $0 += 1 } }
            }
        }
        let deadline = Date().addingTimeInterval(10)
        while answered.withLock({ $0 }) < total && Date() < deadline { usleep(1000) }
        #expect(answered.withLock { $0 } == total)
    }
}

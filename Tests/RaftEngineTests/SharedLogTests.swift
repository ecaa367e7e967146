import CRaftIO
import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

/// Options for tests: small segments so that rotation and deletion happen quickly. The
/// backend defaults to the process-wide choice, so `RAFTD_IO_BACKEND=pwritev` runs every WAL
/// suite on the fallback (scripts/test.sh does a second pass that way).
func testLogOptions(
    backend: IOBackendKind = IOBackendChoice.current.kind, segmentSize: Int = 256 << 10
)
    -> SharedLog.Options
{
    var options = SharedLog.Options()
    options.segmentSize = segmentSize
    options.maxBatchBytes = segmentSize / 4
    options.maxQueuedBytes = segmentSize * 4
    options.cacheBytes = 32 << 10
    options.ioBackend = availableBackends.contains(backend) ? backend : .fallback
    options.onFatal = { _ in }
    return options
}

func entry(_ index: UInt64, term: UInt64, _ text: String = "") -> WALEntry {
    WALEntry(term: Term(term), index: LogIndex(index), payload: Array((text.isEmpty ? "e\(index)t\(term)" : text).utf8))
}

@Suite("WAL: shared log")
struct SharedLogTests {
    @Test("WAL: entries of many groups read back, also after a reopen", arguments: availableBackends)
    func appendAndRead(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions(backend: backend)
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            for round in 0..<5 {
                let writes = (2..<12).map { g in
                    GroupWrite(
                        group: GroupID(UInt64(g)),
                        entries: (1...3).map { entry(UInt64(round * 3 + $0), term: 1) },
                        hardState: HardState(
                            term: Term(1), vote: MemberID(UInt64(g)), commit: LogIndex(UInt64(round * 3))))
                }
                try log.append(writes)
            }
            #expect(log.groups.count == 10)
            #expect(log.lastIndex(of: GroupID(5)) == LogIndex(15))
            #expect(log.statistics.entries == 150)
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        for g in 2..<12 {
            let group = GroupID(UInt64(g))
            #expect(log.firstIndex(of: group) == LogIndex(1))
            #expect(log.lastIndex(of: group) == LogIndex(15))
            #expect(
                log.hardState(of: group) == HardState(term: Term(1), vote: MemberID(UInt64(g)), commit: LogIndex(12))
            )
            let entries = try log.entries(of: group, from: LogIndex(1), to: LogIndex(16), maxBytes: .max)
            #expect(entries == (1...15).map { entry(UInt64($0), term: 1) })
        }
        // maxBytes stops early but returns at least one entry.
        #expect(try log.entries(of: GroupID(3), from: LogIndex(1), to: LogIndex(16), maxBytes: 1).count == 1)
        #expect(log.recoveryReport.batches == 5)
    }

    @Test("WAL: a conflicting suffix is replaced through a truncation record")
    func conflictingSuffix() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions()
        let g = GroupID(7)
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            try log.append([GroupWrite(group: g, entries: (1...10).map { entry($0, term: 1) })])
            try log.append([GroupWrite(group: g, entries: (6...8).map { entry($0, term: 2) })])
            #expect(log.lastIndex(of: g) == LogIndex(8))
            #expect(try log.term(of: g, at: LogIndex(5)) == Term(1))
            #expect(try log.term(of: g, at: LogIndex(6)) == Term(2))
            #expect(throws: WALError.unavailable(group: g, requested: LogIndex(9), lastIndex: LogIndex(8))) {
                try log.term(of: g, at: LogIndex(9))
            }
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        let expected = (1...5).map { entry($0, term: 1) } + (6...8).map { entry($0, term: 2) }
        #expect(try log.entries(of: g, from: LogIndex(1), to: LogIndex(9), maxBytes: .max) == expected)
    }

    @Test("WAL: invalid writes are refused without affecting others in the same batch")
    func invalidWrites() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let log = try SharedLog(directory: dir.path, options: testLogOptions())
        defer { log.close() }
        let g = GroupID(3)
        try log.append([GroupWrite(group: g, entries: (1...3).map { entry($0, term: 2) })])
        let refusals: [[GroupWrite]] = [
            [GroupWrite(group: g, entries: [entry(5, term: 2)])],  // gap
            [GroupWrite(group: g, entries: [entry(4, term: 1)])],  // term going down
            [GroupWrite(group: g, entries: [entry(4, term: 2), entry(6, term: 2)])],  // not consecutive
            [GroupWrite(group: .invalid, entries: [entry(1, term: 1)])],
        ]
        for writes in refusals {
            #expect(throws: WALError.self) { try log.append(writes) }
        }
        try log.compact(group: g, upTo: LogIndex(2), term: Term(2))
        #expect(throws: WALError.self) { try log.append([GroupWrite(group: g, entries: [entry(2, term: 3)])]) }
        // Still usable, and nothing of the refused writes is there.
        try log.append([GroupWrite(group: g, entries: [entry(4, term: 2)])])
        #expect(log.lastIndex(of: g) == LogIndex(4))
        #expect(log.groups == [g])
    }

    @Test("WAL: compaction hides old entries, keeps the compacted term, survives a reopen")
    func compaction() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions()
        let g = GroupID(2)
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            try log.append([GroupWrite(group: g, entries: (1...10).map { entry($0, term: UInt64(1 + $0 / 4)) })])
            try log.compact(group: g, upTo: LogIndex(5), term: Term(2))
            try log.compact(group: g, upTo: LogIndex(3), term: Term(1))  // older: no effect
            #expect(log.firstIndex(of: g) == LogIndex(6))
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        #expect(log.firstIndex(of: g) == LogIndex(6))
        #expect(log.lastIndex(of: g) == LogIndex(10))
        #expect(try log.term(of: g, at: LogIndex(5)) == Term(2))
        #expect(throws: WALError.compacted(group: g, requested: LogIndex(5), firstIndex: LogIndex(6))) {
            try log.entries(of: g, from: LogIndex(5), to: LogIndex(7), maxBytes: .max)
        }
        // A snapshot beyond the last index (a follower installing one) empties the log.
        try log.compact(group: g, upTo: LogIndex(20), term: Term(4))
        #expect(log.firstIndex(of: g) == LogIndex(21))
        #expect(log.lastIndex(of: g) == LogIndex(20))
        try log.append([GroupWrite(group: g, entries: [entry(21, term: 4)])])
        #expect(try log.entries(of: g, from: LogIndex(21), to: LogIndex(22), maxBytes: .max) == [entry(21, term: 4)])
    }

    @Test(
        "WAL: a reset to a snapshot drops the whole log (a conflicting suffix too), with entries after it, also after a reopen"
    )
    func resetToSnapshot() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions()
        let g = GroupID(3)
        let other = GroupID(4)
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            try log.append([
                GroupWrite(group: g, entries: (1...10).map { entry($0, term: 1) }),
                GroupWrite(group: other, entries: (1...3).map { entry($0, term: 1) }),
            ])
            // A snapshot at 6 in term 2: entries 7...10 of term 1 conflict and must go too.
            try log.append([
                GroupWrite(
                    group: g, reset: LogReset(index: LogIndex(6), term: Term(2)), entries: [entry(7, term: 2, "new")],
                    hardState: HardState(term: Term(2), vote: .none, commit: LogIndex(6)))
            ])
            #expect(log.firstIndex(of: g) == LogIndex(7))
            #expect(log.lastIndex(of: g) == LogIndex(7))
            // A reset below the compacted index is refused, and changes nothing.
            #expect(throws: WALError.self) {
                try log.append([GroupWrite(group: g, reset: LogReset(index: LogIndex(5), term: Term(2)))])
            }
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        #expect(log.firstIndex(of: g) == LogIndex(7))
        #expect(log.lastIndex(of: g) == LogIndex(7))
        #expect(try log.term(of: g, at: LogIndex(6)) == Term(2))
        #expect(
            try log.entries(of: g, from: LogIndex(7), to: LogIndex(8), maxBytes: .max) == [entry(7, term: 2, "new")])
        #expect(log.hardState(of: g)?.commit == LogIndex(6))
        #expect(log.lastIndex(of: other) == LogIndex(3))
        // A reset ahead of the whole log (a follower far behind) empties it.
        try log.append([GroupWrite(group: other, reset: LogReset(index: LogIndex(50), term: Term(3)))])
        #expect(log.firstIndex(of: other) == LogIndex(51))
        #expect(log.lastIndex(of: other) == LogIndex(50))
        try log.append([GroupWrite(group: other, entries: [entry(51, term: 3)])])
        #expect(log.lastIndex(of: other) == LogIndex(51))
    }

    @Test("WAL: the compaction index that keeps at most N bytes of payloads, through truncation and compaction")
    func retentionByBytes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let log = try SharedLog(directory: dir.path, options: testLogOptions())
        defer { log.close() }
        let g = GroupID(5)
        // Entry k carries k * 10 bytes.
        func sized(_ k: UInt64, term: UInt64 = 1) -> WALEntry {
            WALEntry(term: Term(term), index: LogIndex(k), payload: [UInt8](repeating: 1, count: Int(k) * 10))
        }
        #expect(log.compactionIndex(of: g, keepingAtMost: 100) == .zero)
        try log.append([GroupWrite(group: g, entries: (1...10).map { sized($0) })])
        // Entries 9 and 10 hold 190 bytes: within 150 only entry 10 stays.
        #expect(log.compactionIndex(of: g, keepingAtMost: 150) == LogIndex(9))
        #expect(log.compactionIndex(of: g, keepingAtMost: 190) == LogIndex(8))
        #expect(log.compactionIndex(of: g, keepingAtMost: 550) == .zero)
        #expect(log.compactionIndex(of: g, keepingAtMost: 549) == LogIndex(1))
        // The last entry alone is larger: everything before it goes.
        #expect(log.compactionIndex(of: g, keepingAtMost: 5) == LogIndex(10))
        try log.compact(group: g, upTo: LogIndex(4), term: Term(1))
        #expect(log.compactionIndex(of: g, keepingAtMost: 190) == LogIndex(8))
        #expect(log.compactionIndex(of: g, keepingAtMost: 1_000) == LogIndex(4))
        // A conflicting suffix replaced by smaller entries.
        try log.append([GroupWrite(group: g, entries: [WALEntry(term: Term(2), index: LogIndex(8), payload: [1])])])
        #expect(log.compactionIndex(of: g, keepingAtMost: 71) == LogIndex(6))
        #expect(log.compactionIndex(of: g, keepingAtMost: 61) == LogIndex(7))
    }

    @Test("WAL: a removed group is gone, also after a reopen")
    func removeGroup() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions()
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            try log.append([
                GroupWrite(group: GroupID(2), entries: [entry(1, term: 1)]),
                GroupWrite(group: GroupID(3), entries: [entry(1, term: 1)]),
            ])
            try log.removeGroup(GroupID(2))
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        #expect(log.groups == [GroupID(3)])
        #expect(log.lastIndex(of: GroupID(2)) == .zero)
    }

    @Test("WAL: concurrent writers share batches (group commit)")
    func groupCommit() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = testLogOptions(segmentSize: 4 << 20)
        options.cacheBytes = 1 << 20
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for g in 2..<202 {
                tasks.addTask {
                    for i in 1...10 {
                        try await log.append([
                            GroupWrite(group: GroupID(UInt64(g)), entries: [entry(UInt64(i), term: 1)])
                        ])
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let stats = log.statistics
        #expect(stats.entries == 2000)
        #expect(stats.fdatasyncs < 2000, "\(stats.fdatasyncs) fdatasyncs for 2000 entries: no batching happened")
        for g in 2..<202 {
            #expect(log.lastIndex(of: GroupID(UInt64(g))) == LogIndex(10))
        }
    }

    @Test("WAL: segments rotate, and the ones no group needs are deleted", arguments: availableBackends)
    func rotationAndDeletion(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions(backend: backend, segmentSize: 64 << 10)
        let payload = String(repeating: "x", count: 1000)
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            for i in 1...300 {
                try log.append([GroupWrite(group: GroupID(2), entries: [entry(UInt64(i), term: 1, payload)])])
                if i % 50 == 0 { try log.compact(group: GroupID(2), upTo: LogIndex(UInt64(i - 10)), term: Term(1)) }
            }
            try log.collectGarbage()
            let stats = log.statistics
            #expect(stats.segmentsCreated >= 4)
            #expect(stats.segmentsDeleted >= 3)
            #expect(try FileSystem.list(dir.path).count <= 2)
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        #expect(log.firstIndex(of: GroupID(2)) == LogIndex(291))
        let entries = try log.entries(of: GroupID(2), from: LogIndex(291), to: LogIndex(301), maxBytes: .max)
        #expect(entries == (291...300).map { entry(UInt64($0), term: 1, payload) })
    }

    @Test("WAL: a rarely written group pinning old segments is rewritten forward")
    func rewriteForward() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = testLogOptions(segmentSize: 64 << 10)
        options.maxSegments = 3
        let payload = String(repeating: "y", count: 2000)
        let quiet = GroupID(9)
        do {
            let log = try SharedLog(directory: dir.path, options: options)
            defer { log.close() }
            try log.append([
                GroupWrite(
                    group: quiet, entries: [entry(1, term: 3), entry(2, term: 3)],
                    hardState: HardState(term: Term(3), vote: MemberID(1), commit: LogIndex(2)))
            ])
            try log.compact(group: quiet, upTo: LogIndex(1), term: Term(3))
            for i in 1...400 {
                try log.append([GroupWrite(group: GroupID(2), entries: [entry(UInt64(i), term: 1, payload)])])
                try log.compact(group: GroupID(2), upTo: LogIndex(UInt64(i)), term: Term(1))
            }
            try log.collectGarbage()
            let stats = log.statistics
            #expect(stats.bytesRewritten > 0)
            #expect(stats.writeAmplification < 1.05, "write amplification \(stats.writeAmplification)")
            let files = try FileSystem.list(dir.path)
            #expect(files.count <= options.maxSegments, "\(files)")
        }
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        #expect(log.hardState(of: quiet) == HardState(term: Term(3), vote: MemberID(1), commit: LogIndex(2)))
        #expect(log.firstIndex(of: quiet) == LogIndex(2))
        #expect(try log.term(of: quiet, at: LogIndex(1)) == Term(3))
        #expect(try log.entries(of: quiet, from: LogIndex(2), to: LogIndex(3), maxBytes: .max) == [entry(2, term: 3)])
    }

    @Test("WAL: writes beyond the batch bound are refused as too large")
    func tooLarge() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = testLogOptions()
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        let big = WALEntry(
            term: Term(1), index: LogIndex(1), payload: [UInt8](repeating: 1, count: options.maxBatchBytes))
        #expect(throws: WALError.self) { try log.append([GroupWrite(group: GroupID(2), entries: [big])]) }
    }

    @Test("WAL: an unknown file in the WAL directory is refused")
    func foreignFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = FileManager.default.createFile(atPath: dir.file("notes.txt"), contents: Data("hi".utf8))
        do {
            _ = try SharedLog(directory: dir.path, options: testLogOptions())
            Issue.record("opened a WAL directory with a foreign file")
        } catch {
            guard case .foreignFile(let file, _) = error else { Issue.record("\(error)"); return }
            #expect(file.hasSuffix("notes.txt"))
        }
    }
}

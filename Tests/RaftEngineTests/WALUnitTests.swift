import Foundation
import RaftConsensus
import Synchronization
import Testing

@testable import RaftEngine

/// One caller's writes for one storage are one ordered unit: the WAL cuts it into batches,
/// accepts or refuses it whole, and makes its batches durable in order (issue 9, defect 1).
@Suite("WAL: ordered units")
struct WALUnitTests {
    static let payload = [UInt8](repeating: 0x5A, count: 3_000)

    func entries(_ range: ClosedRange<UInt64>, term: UInt64) -> [WALEntry] {
        range.map { WALEntry(term: Term(term), index: LogIndex($0), payload: Self.payload) }
    }

    func makeLog(_ dir: TemporaryDirectory, queue: Int = 256 << 10) throws -> (SharedLog, FaultyDevice) {
        let device = try FaultyDevice(backend: availableBackends[0])
        var options = testLogOptions(backend: availableBackends[0], segmentSize: 64 << 10)
        options.maxBatchBytes = 16 << 10
        options.maxQueuedBytes = queue
        options.makeDevice = { _ in device }
        return (try SharedLog(directory: dir.path, options: options), device)
    }

    final class Outcome: Sendable {
        let result = Mutex<Result<Void, WALError>?>(nil)
    }

    /// Submits without blocking; the outcome is filled in once known.
    func submit(_ log: SharedLog, _ writes: [GroupWrite]) -> Outcome {
        let outcome = Outcome()
        log.append(writes) { result in outcome.result.withLock { $0 = result } }
        return outcome
    }

    func wait(_ outcome: Outcome) -> Result<Void, WALError> {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let result = outcome.result.withLock({ $0 }) { return result }
            usleep(1_000)
        }
        return outcome.result.withLock { $0 } ?? .failure(.closed)
    }

    @Test("WAL: a unit larger than a batch and a segment is cut into ordered batches; it reads back after a reopen")
    func largeUnit() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let big = GroupID(2)
        let small = GroupID(3)
        do {
            let (log, _) = try makeLog(dir)
            defer { log.close() }
            try log.append([
                GroupWrite(
                    group: big, entries: entries(1...60, term: 1),
                    hardState: HardState(term: Term(1), vote: MemberID(1), commit: LogIndex(60))),
                GroupWrite(
                    group: small, entries: entries(1...5, term: 2),
                    hardState: HardState(term: Term(2), vote: .none, commit: LogIndex(4))),
            ])
            let stats = log.statistics
            #expect(stats.batches >= 12, "180 KiB in batches of 16 KiB")
            #expect(stats.segmentsCreated >= 3, "180 KiB in segments of 64 KiB")
            #expect(log.lastIndex(of: big) == LogIndex(60))
            #expect(log.lastIndex(of: small) == LogIndex(5))
        }
        let (log, _) = try makeLog(dir)
        defer { log.close() }
        #expect(log.lastIndex(of: big) == LogIndex(60))
        #expect(log.hardState(of: big)?.commit == LogIndex(60))
        #expect(log.hardState(of: small) == HardState(term: Term(2), vote: .none, commit: LogIndex(4)))
        let read = try log.entries(of: big, from: LogIndex(1), to: LogIndex(61), maxBytes: .max)
        #expect(read == entries(1...60, term: 1))
    }

    @Test("WAL: an overwriting unit refused as overloaded leaves nothing; retried, it replaces the suffix in order")
    func overloadedUnitIsRefusedWhole() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let follower = GroupID(2)
        let filler = GroupID(5)
        let (log, device) = try makeLog(dir, queue: 64 << 10)
        defer { log.close() }
        try log.append([GroupWrite(group: follower, entries: entries(1...20, term: 1))])
        // A slow disk: the filler stays queued, the queue is nearly full.
        device.stalled.store(true, ordering: .releasing)
        let first = submit(log, [GroupWrite(group: filler, entries: entries(1...2, term: 1))])
        let second = submit(log, [GroupWrite(group: filler, entries: entries(3...15, term: 1))])
        // A new leader's entries from index 10 on (term 2): a truncation, 31 entries over
        // several batches, and the hard state last.
        let overwrite = [
            GroupWrite(
                group: follower, entries: entries(10...40, term: 2),
                hardState: HardState(term: Term(2), vote: .none, commit: LogIndex(40)))
        ]
        let refused = submit(log, overwrite)
        guard case .failure(let error) = wait(refused) else {
            Issue.record("a unit beyond the queue bound was accepted")
            device.stalled.store(false, ordering: .releasing)
            return
        }
        #expect(error.disposition == WALError.Disposition.retry)
        device.stalled.store(false, ordering: .releasing)
        #expect(throws: Never.self) { try wait(first).get() }
        #expect(throws: Never.self) { try wait(second).get() }
        // Nothing of the refused unit is there.
        #expect(log.lastIndex(of: follower) == LogIndex(20))
        #expect(try log.term(of: follower, at: LogIndex(15)) == Term(1))
        #expect(log.hardState(of: follower) == nil)
        // Retried whole: the suffix is replaced, every batch of it durable.
        try log.append(overwrite)
        #expect(log.lastIndex(of: follower) == LogIndex(40))
        #expect(try log.term(of: follower, at: LogIndex(9)) == Term(1))
        #expect(try log.term(of: follower, at: LogIndex(10)) == Term(2))
        #expect(log.hardState(of: follower)?.commit == LogIndex(40))
    }

    /// The guarantee the crash test checks against (docs/WAL.md, "the prefix of an
    /// overwrite"): an overwriting unit cut by a crash after its first batch leaves the
    /// truncation and the first replaced entries, so the log may end below its old last
    /// index. Raft allows it: the caller overwrites only from the first conflicting entry,
    /// and nothing from there on is committed. The old hard state stays (it comes last).
    @Test("WAL: a unit cut after its first durable batch leaves a prefix: an overwrite may end the log shorter")
    func overwriteCutAfterFirstBatch() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let follower = GroupID(2)
        let before = HardState(term: Term(1), vote: MemberID(1), commit: LogIndex(3))
        do {
            let (log, device) = try makeLog(dir)
            defer { log.close() }
            try log.append([GroupWrite(group: follower, entries: entries(1...12, term: 1), hardState: before)])
            // The second batch of the next unit never reaches the disk (the process died).
            device.fault.withLock { $0 = .writeFailsFrom(2, EIO) }
            let overwrite = GroupWrite(
                group: follower, entries: entries(4...12, term: 2),
                hardState: HardState(term: Term(2), vote: .none, commit: LogIndex(3)))
            #expect(throws: WALError.self) { try log.append([overwrite]) }
        }
        let (log, _) = try makeLog(dir)
        defer { log.close() }
        let last = log.lastIndex(of: follower)
        #expect(last >= LogIndex(4) && last < LogIndex(12), "the first batch holds the truncation and a few entries")
        let read = try log.entries(of: follower, from: LogIndex(1), to: last.next, maxBytes: .max)
        #expect(read == entries(1...3, term: 1) + entries(4...last.rawValue, term: 2))
        #expect(log.hardState(of: follower) == before)
    }

    @Test("WAL: an overwrite that starts at a durable entry of the same term is refused, and changes nothing")
    func sameTermOverwriteRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let group = GroupID(2)
        let (log, _) = try makeLog(dir)
        defer { log.close() }
        try log.append([GroupWrite(group: group, entries: entries(1...3, term: 1) + entries(4...6, term: 2))])
        // 4 is durable with term 2: rewriting from 4 is not a conflict.
        #expect(throws: WALError.self) { try log.append([GroupWrite(group: group, entries: entries(4...8, term: 2))]) }
        #expect(log.lastIndex(of: group) == LogIndex(6))
        // From 5 with term 3 is a conflict; from 4 with term 3 too.
        try log.append([GroupWrite(group: group, entries: entries(5...7, term: 3))])
        #expect(try log.term(of: group, at: LogIndex(5)) == Term(3))
        try log.append([GroupWrite(group: group, entries: entries(4...4, term: 3))])
        #expect(log.lastIndex(of: group) == LogIndex(4))
    }

    @Test("WAL: no space for the second segment a unit needs: the unit is refused whole, the log goes on")
    func unitRefusedWholeWithoutSpace() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let group = GroupID(2)
        let other = GroupID(3)
        do {
            let (log, device) = try makeLog(dir)
            defer { log.close() }
            try log.append([GroupWrite(group: group, entries: entries(1...5, term: 1))])
            // 150 KiB: needs at least two new segments; the first can be made, the second not.
            device.fault.withLock { $0 = .allocateFailsFrom(2, ENOSPC) }
            let unit = [
                GroupWrite(group: other, entries: entries(1...3, term: 1)),
                GroupWrite(
                    group: group, entries: entries(6...55, term: 1),
                    hardState: HardState(term: Term(1), vote: MemberID(1), commit: LogIndex(55))),
            ]
            do {
                try log.append(unit)
                Issue.record("the unit was accepted without space for its segments")
            } catch {
                guard case .segmentUnavailable(let io) = error else { throw error }
                #expect(io.kind == .noSpace)
            }
            #expect(log.lastIndex(of: group) == LogIndex(5))
            #expect(log.lastIndex(of: other) == .zero)
            #expect(log.hardState(of: group) == nil)
            // Space returns: the same unit goes in whole.
            device.fault.withLock { $0 = .none }
            try log.append(unit)
            #expect(log.lastIndex(of: group) == LogIndex(55))
            #expect(log.lastIndex(of: other) == LogIndex(3))
        }
        // A segment started for the undone unit and left empty is no damage.
        let (log, _) = try makeLog(dir)
        defer { log.close() }
        #expect(log.lastIndex(of: group) == LogIndex(55))
        #expect(try log.entries(of: group, from: LogIndex(1), to: LogIndex(56), maxBytes: .max).count == 55)
    }
}

@Suite("WAL: ordered units, review fixes")
struct WALUnitReviewTests {
    @Test("WAL: close returns while a compaction round is pending (a unit rotated segments just before)")
    func closeWithCompactionPending() throws {
        for _ in 0..<5 {
            let dir = try TemporaryDirectory()
            defer { dir.remove() }
            var options = testLogOptions(segmentSize: 64 << 10)
            options.maxBatchBytes = 8 << 10
            let log = try SharedLog(directory: dir.path, options: options)
            // 200 KiB in 8 KiB batches: rotations (each sets a compaction round pending)
            // while dozens of batches are still to be written when close arrives.
            let payload = [UInt8](repeating: 1, count: 3_000)
            let unit = [
                GroupWrite(
                    group: GroupID(2),
                    entries: (1...66).map { WALEntry(term: Term(1), index: LogIndex($0), payload: payload) })
            ]
            log.append(unit) { _ in }
            let closed = Flag()
            let closer = Thread { [log] in
                log.close()
                closed.set()
            }
            closer.start()
            let deadline = Date().addingTimeInterval(20)
            while !closed.isSet && Date() < deadline { usleep(1_000) }
            #expect(closed.isSet, "close() did not return")
            if !closed.isSet { return }
        }
    }

    @Test("WAL: the largest entry fits one batch even when the batch bound is not a multiple of 8")
    func unalignedBatchBound() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = testLogOptions(segmentSize: 256 << 10)
        options.maxBatchBytes = 16_001
        let log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        let max = log.maxEntryPayloadBytes
        #expect(WALFormat.recordSize(payload: max) <= options.maxBatchBytes)
        try log.append([
            GroupWrite(
                group: GroupID(2),
                entries: [WALEntry(term: Term(1), index: LogIndex(1), payload: [UInt8](repeating: 2, count: max))])
        ])
        #expect(log.lastIndex(of: GroupID(2)) == LogIndex(1))
        #expect(throws: WALError.self) {
            try log.append([
                GroupWrite(
                    group: GroupID(2),
                    entries: [
                        WALEntry(term: Term(1), index: LogIndex(2), payload: [UInt8](repeating: 2, count: max + 1))
                    ])
            ])
        }
    }
}

/// A flag set on one thread and read on another.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

import Foundation
import RaftConsensus
import Synchronization
import Testing

@testable import RaftEngine

/// A WAL device that fails on command: the I/O seam the issue asks for.
final class FaultyDevice: WALDevice, @unchecked Sendable {
    enum Fault {
        case none
        case allocateFails(Int32)
        case writeFails(Int32)
        case syncFails(Int32)
        /// Preallocation fails from the `n`th call on (counting from 1 after it is set).
        case allocateFailsFrom(Int, Int32)
        /// Batch writes fail from the `n`th submit on (counting from 1 after it is set).
        case writeFailsFrom(Int, Int32)
    }

    private let inner: BatchWriter
    let fault = Mutex<Fault>(.none)
    /// While set, `wait` holds every batch (the disk is slow): the WAL queue fills.
    let stalled = Atomic<Bool>(false)
    private let allocations = Mutex(0)
    private let submits = Mutex(0)
    /// Tickets whose wait must fail, and how.
    private var failing: [BatchTicket: IOError] = [:]

    init(backend: IOBackendKind) throws(IOError) {
        inner = try BatchWriter(backend: backend, depth: 64, maxBatchesInFlight: 2)
    }

    func submit(_ file: DiskFile, _ writes: [PositionedWrite], sync: Bool) throws(IOError) -> BatchTicket {
        let current = fault.withLock { $0 }
        if case .writeFails(let code) = current {
            // The write is rejected as the kernel would (nothing reaches the file).
            throw IOError("io_uring write", path: file.path, code: code)
        }
        if case .writeFailsFrom(let n, let code) = current {
            let count = submits.withLock {
                $0 += 1
                return $0
            }
            if count >= n { throw IOError("io_uring write", path: file.path, code: code) }
        }
        let ticket = try inner.submit(file, writes, sync: sync)
        if case .syncFails(let code) = current { failing[ticket] = IOError("fdatasync", path: file.path, code: code) }
        return ticket
    }

    func wait(for ticket: BatchTicket) throws(IOError) {
        while stalled.load(ordering: .acquiring) { usleep(1_000) }
        try inner.wait(for: ticket)
        if let failure = failing.removeValue(forKey: ticket) { throw failure }
    }

    func allocate(_ file: DiskFile, length: UInt64) throws(IOError) {
        let current = fault.withLock { $0 }
        if case .allocateFails(let code) = current {
            throw IOError("fallocate", path: file.path, code: code)
        }
        if case .allocateFailsFrom(let n, let code) = current {
            let count = allocations.withLock {
                $0 += 1
                return $0
            }
            if count >= n { throw IOError("fallocate", path: file.path, code: code) }
        }
        try inner.allocate(file, length: length)
    }
}

/// Records `onFatal` calls.
final class FatalRecorder: @unchecked Sendable {
    let calls = Mutex<[WALError]>([])
}

@Suite("WAL: injected faults")
struct WALFaultTests {
    func makeLog(_ dir: TemporaryDirectory, backend: IOBackendKind) throws -> (SharedLog, FaultyDevice, FatalRecorder) {
        let device = try FaultyDevice(backend: backend)
        let recorder = FatalRecorder()
        var options = testLogOptions(backend: backend, segmentSize: 64 << 10)
        options.makeDevice = { _ in device }
        options.onFatal = { error in recorder.calls.withLock { $0.append(error) } }
        return (try SharedLog(directory: dir.path, options: options), device, recorder)
    }

    @Test("WAL: a failed fdatasync stops the writer for good and calls onFatal once", arguments: availableBackends)
    func syncFailure(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (log, device, recorder) = try makeLog(dir, backend: backend)
        defer { log.close() }
        try log.append([GroupWrite(group: GroupID(2), entries: [entry(1, term: 1)])])
        device.fault.withLock { $0 = .syncFails(EIO) }
        do {
            try log.append([GroupWrite(group: GroupID(2), entries: [entry(2, term: 1)])])
            Issue.record("append succeeded although fdatasync failed")
        } catch {
            guard case .stopped(let cause) = error else { Issue.record("\(error)"); return }
            #expect(cause.contains("fdatasync") && cause.contains("EIO"), "\(cause)")
        }
        // Clearing the fault changes nothing: no retry after an fdatasync failure.
        device.fault.withLock { $0 = .none }
        #expect(throws: WALError.self) { try log.append([GroupWrite(group: GroupID(2), entries: [entry(2, term: 1)])]) }
        #expect(recorder.calls.withLock { $0.count } == 1)
        // The failed entry never became visible.
        #expect(log.lastIndex(of: GroupID(2)) == LogIndex(1))
    }

    @Test("WAL: EIO on write stops the writer with a clear error", arguments: availableBackends)
    func writeFailure(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (log, device, recorder) = try makeLog(dir, backend: backend)
        defer { log.close() }
        device.fault.withLock { $0 = .writeFails(EIO) }
        do {
            try log.append([GroupWrite(group: GroupID(2), entries: [entry(1, term: 1)])])
            Issue.record("append succeeded although the write failed")
        } catch {
            #expect("\(error)".contains("EIO"))
            #expect("\(error)".contains("restart the process"))
        }
        #expect(recorder.calls.withLock { $0.count } == 1)
    }

    @Test("WAL: ENOSPC preallocating a segment fails those writes only; the log goes on when space returns")
    func noSpaceForNewSegment() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (log, device, recorder) = try makeLog(dir, backend: availableBackends[0])
        defer { log.close() }
        let payload = String(repeating: "z", count: 4000)
        var index: UInt64 = 0
        // Fill the first segment.
        while log.statistics.bytesWritten < UInt64(60 << 10) {
            index += 1
            try log.append([GroupWrite(group: GroupID(2), entries: [entry(index, term: 1, payload)])])
        }
        device.fault.withLock { $0 = .allocateFails(ENOSPC) }
        var sawNoSpace = false
        for _ in 0..<4 {
            do {
                try log.append([GroupWrite(group: GroupID(2), entries: [entry(index + 1, term: 1, payload)])])
                index += 1
            } catch {
                guard case .segmentUnavailable(let io) = error else { Issue.record("\(error)"); return }
                #expect(io.kind == .noSpace)
                #expect(error.disposition == WALError.Disposition.retry)
                sawNoSpace = true
            }
        }
        #expect(sawNoSpace)
        device.fault.withLock { $0 = .none }
        try log.append([GroupWrite(group: GroupID(2), entries: [entry(index + 1, term: 1, payload)])])
        #expect(log.lastIndex(of: GroupID(2)) == LogIndex(index + 1))
        #expect(recorder.calls.withLock { $0.isEmpty })
        // No leftover temporary segment.
        #expect(try FileSystem.list(dir.path).allSatisfy { $0.hasSuffix(".wal") })
    }
}

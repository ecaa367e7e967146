import CRaftIO
import Foundation
import Testing

@testable import RaftEngine

/// The backends this machine can run: the fallback always, io_uring when its probe passes.
/// Every test here runs on each, so both backends pass the same suite.
let availableBackends: [IOBackendKind] = {
    if let failure = IOBackendChoice.probeIOUring() {
        print("note: io_uring unavailable here (\(failure)); batch tests run on the fallback only")
        return [.fallback]
    }
    return [.ioUring, .fallback]
}()

@Suite("I/O: batched writes")
struct BatchWriterTests {
    @Test("I/O: batched append + fdatasync reads back byte-equal", arguments: availableBackends)
    func appendAndReadBack(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = try DiskFile.open(dir.file("segment"), .createNew)
        try file.allocate(offset: 0, length: 1 << 20)
        let writer = try BatchWriter(backend: backend, depth: 64)
        #expect(writer.backend == backend)

        var rng = SplitMix64(seed: 2)
        var expected = [UInt8]()
        for batch in 0..<20 {
            // Several writes per batch, each gathering several buffers, of uneven sizes.
            let writeCount = 1 + batch % 5
            var payloads: [[[UInt8]]] = []
            for _ in 0..<writeCount {
                payloads.append((0..<(1 + Int(rng.next() % 4))).map { _ in rng.bytes(1 + Int(rng.next() % 5000)) })
            }
            try withPositionedWrites(payloads, startingAt: UInt64(expected.count)) { writes in
                try writer.writeAndSync(file, writes)
            }
            for write in payloads { for buffer in write { expected += buffer } }
        }
        #expect(writer.operationsInFlight == 0)
        var readBack = [UInt8](repeating: 0, count: expected.count)
        let n = try readBack.withUnsafeMutableBytes { try file.readFully(fromAbsoluteOffset: 0, into: $0) }
        #expect(n == expected.count)
        #expect(readBack == expected)
        #expect(try file.size() == 1 << 20)  // preallocated size unchanged
    }

    @Test("I/O: several batches in flight complete independently", arguments: availableBackends)
    func pipelined(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = try DiskFile.open(dir.file("segment"), .createNew)
        let writer = try BatchWriter(backend: backend, depth: 32, maxBatchesInFlight: 4)
        let blocks = (0..<4).map { [UInt8](repeating: UInt8($0 + 1), count: 4096) }
        try blocks[0].withUnsafeBytes { b0 in
            try blocks[1].withUnsafeBytes { b1 in
                try blocks[2].withUnsafeBytes { b2 in
                    try blocks[3].withUnsafeBytes { b3 in
                        let buffers = [b0, b1, b2, b3]
                        let tickets = try (0..<4).map { i in
                            try writer.submit(
                                file, [PositionedWrite(offset: UInt64(i * 4096), bytes: buffers[i])], sync: i == 3)
                        }
                        // Wait out of submission order: completions are routed by slot.
                        for ticket in tickets.reversed() { try writer.wait(for: ticket) }
                    }
                }
            }
        }
        var readBack = [UInt8](repeating: 0, count: 4 * 4096)
        _ = try readBack.withUnsafeMutableBytes { try file.readFully(fromAbsoluteOffset: 0, into: $0) }
        #expect(readBack == blocks.flatMap { $0 })
    }

    @Test("I/O: more operations than the ring holds are submitted as room frees up", arguments: availableBackends)
    func ringPressure(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = try DiskFile.open(dir.file("segment"), .createNew)
        let writer = try BatchWriter(backend: backend, depth: 8, maxBatchesInFlight: 8)
        let block = [UInt8](repeating: 0xAB, count: 512)
        try block.withUnsafeBytes { bytes in
            var tickets: [BatchTicket] = []
            for i in 0..<8 {
                let writes = (0..<3).map { PositionedWrite(offset: UInt64((i * 3 + $0) * 512), bytes: bytes) }
                tickets.append(try writer.submit(file, writes, sync: true))
            }
            for ticket in tickets { try writer.wait(for: ticket) }
        }
        #expect(try file.size() == 8 * 3 * 512)
    }

    @Test("I/O: ENOSPC from the kernel is a typed error naming the file", arguments: availableBackends)
    func noSpace(backend: IOBackendKind) throws {
        // /dev/full answers every write with ENOSPC: a real kernel error, no mount needed.
        let file = try DiskFile.open("/dev/full", .readWrite)
        let writer = try BatchWriter(backend: backend)
        let block = [UInt8](repeating: 1, count: 4096)
        do {
            try block.withUnsafeBytes { try writer.writeAndSync(file, [PositionedWrite(offset: 0, bytes: $0)]) }
            Issue.record("write to /dev/full succeeded")
        } catch let error as IOError {
            #expect(error.kind == .noSpace)
            #expect(error.code == ENOSPC)
            #expect(error.path == "/dev/full")
            #expect(error.description.contains("ENOSPC"))
        }
        // A write error is not an fdatasync failure: the writer still works.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let good = try DiskFile.open(dir.file("ok"), .createNew)
        try block.withUnsafeBytes { try writer.writeAndSync(good, [PositionedWrite(offset: 0, bytes: $0)]) }
    }

    @Test("I/O: a failed fdatasync stops the writer for good", arguments: availableBackends)
    func syncFailureStops(backend: IOBackendKind) throws {
        // fdatasync on a pipe fails with EINVAL: a real kernel fdatasync failure.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let pipeEnd = try DiskFile.open("/proc/self/fd/\(fds[1])", .init(flags: O_WRONLY))
        let writer = try BatchWriter(backend: backend)
        #expect(throws: IOError.self) { try writer.writeAndSync(pipeEnd, []) }

        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let good = try DiskFile.open(dir.file("ok"), .createNew)
        let block = [UInt8](repeating: 1, count: 16)
        do {
            try block.withUnsafeBytes { try writer.writeAndSync(good, [PositionedWrite(offset: 0, bytes: $0)]) }
            Issue.record("writer accepted work after an fdatasync failure")
        } catch let error as IOError {
            #expect(error.kind == .stopped)
        }
        #expect(try good.size() == 0)  // nothing reached the file
    }
}

/// Short writes need RLIMIT_FSIZE, which is process-wide: these run one at a time.
@Suite("I/O: short writes", .serialized)
struct ShortWriteTests {
    @Test("I/O: a short write is continued and the kernel's EFBIG is a typed error, on every backend")
    func shortWriteThenError() throws {
        let limit: UInt64 = 1 << 40  // far beyond anything the other tests write
        #expect(craft_set_file_size_limit(limit) == 0)
        defer { _ = craft_set_file_size_limit(UInt64.max) }
        for backend in availableBackends {
            let dir = try TemporaryDirectory()
            defer { dir.remove() }
            let file = try DiskFile.open(dir.file("big"), .createNew)
            let writer = try BatchWriter(backend: backend)
            let block = [UInt8](repeating: 7, count: 4096)
            do {
                // 100 bytes fit below the limit: the kernel writes them (a short write), the
                // continuation then fails with EFBIG.
                try block.withUnsafeBytes { bytes in
                    try writer.writeAndSync(file, [PositionedWrite(offset: limit - 100, bytes: bytes)])
                }
                Issue.record("\(backend): write past RLIMIT_FSIZE succeeded")
            } catch let error as IOError {
                #expect(error.kind == .fileTooLarge, "\(backend): \(error)")
                #expect(error.path == file.path)
            }
            #expect(try file.size() == limit, "\(backend): the short write's 100 bytes are in the file")
        }
    }
}

/// Turns nested byte arrays into positioned writes laid end to end from `start`.
func withPositionedWrites<T>(
    _ payloads: [[[UInt8]]],
    startingAt start: UInt64,
    _ body: ([PositionedWrite]) throws -> T
) throws -> T {
    // Copy into one allocation that outlives the writes.
    let total = payloads.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } }
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 4096)
    defer { storage.deallocate() }
    var cursor = 0
    var offset = start
    var writes: [PositionedWrite] = []
    for write in payloads {
        var buffers: [UnsafeRawBufferPointer] = []
        for buffer in write {
            let target = UnsafeMutableRawBufferPointer(rebasing: storage[cursor..<(cursor + buffer.count)])
            target.copyBytes(from: buffer)
            buffers.append(UnsafeRawBufferPointer(target))
            cursor += buffer.count
        }
        let length = write.reduce(0) { $0 + $1.count }
        writes.append(PositionedWrite(offset: offset, buffers: buffers))
        offset += UInt64(length)
    }
    return try body(writes)
}

@Suite("I/O: writer lifetime and bugs")
struct BatchWriterLifetimeTests {
    @Test("I/O: a writer released with batches in flight drains the kernel first", arguments: availableBackends)
    func releaseWithBatchesInFlight(backend: IOBackendKind) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = try DiskFile.open(dir.file("segment"), .createNew)
        let block = [UInt8](repeating: 9, count: 65536)
        try block.withUnsafeBytes { bytes in
            var writer: BatchWriter? = try BatchWriter(backend: backend, depth: 16, maxBatchesInFlight: 4)
            for i in 0..<4 {
                _ = try writer!.submit(file, [PositionedWrite(offset: UInt64(i * 65536), bytes: bytes)], sync: true)
            }
            writer = nil  // deinit reaps every completion before freeing the iovecs
        }
        #expect(try file.size() == 4 * 65536)
    }

    @Test("I/O: an EBADF from the kernel stops the process (it can only be a raftd bug)")
    func badDescriptorTraps() async {
        await #expect(processExitsWith: .failure) {
            let file = try DiskFile.open("/dev/null", .readWrite)
            // Close the descriptor behind DiskFile's back, as a bug elsewhere would.
            _ = close(file.descriptor)
            try file.syncData()
        }
    }
}

import Foundation
import Testing

@testable import RaftEngine

@Suite("I/O: files")
struct DiskFileTests {
    @Test("I/O: opening a missing file names it and says not found")
    func missing() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        do {
            _ = try DiskFile.open(dir.file("absent"), .readOnly)
            Issue.record("opened a missing file")
        } catch {
            #expect(error.kind == .notFound)
            #expect(error.description.contains(dir.file("absent")))
            #expect(error.description.contains("ENOENT"))
        }
    }

    @Test("I/O: createNew refuses an existing file")
    func createNew() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try DiskFile.open(dir.file("a"), .createNew)
        #expect(throws: IOError("open", path: dir.file("a"), code: EEXIST)) {
            try DiskFile.open(dir.file("a"), .createNew)
        }
    }

    @Test("I/O: write, sync, pread, allocate and truncate")
    func basicOperations() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = try DiskFile.open(dir.file("f"), .createNew)
        try file.allocate(offset: 0, length: 8192)
        #expect(try file.size() == 8192)
        let data = Array("hello, wal".utf8)
        try data.withUnsafeBytes { try file.write(toAbsoluteOffset: 100, $0) }
        try file.syncData()
        try file.sync()
        try DiskFile.syncDirectory(dir.path)
        var buffer = [UInt8](repeating: 0, count: data.count)
        let n = try buffer.withUnsafeMutableBytes { try file.read(fromAbsoluteOffset: 100, into: $0) }
        #expect(n == data.count)
        #expect(buffer == data)
        try file.truncate(to: 50)
        #expect(try file.size() == 50)
        // Reading past the end returns what exists: nothing.
        #expect(try buffer.withUnsafeMutableBytes { try file.readFully(fromAbsoluteOffset: 50, into: $0) } == 0)
        try file.close()
        try file.close()  // idempotent
    }

    @Test("I/O: syncDirectory on a file is refused as not a directory")
    func syncDirectoryOnFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try DiskFile.open(dir.file("plain"), .createNew)
        #expect(throws: IOError.self) { try DiskFile.syncDirectory(dir.file("plain")) }
    }

    @Test("I/O: backend selection honours the override and rejects unknown names")
    func backendSelection() throws {
        #expect(try IOBackendChoice.resolve(requested: "pwritev").kind == .fallback)
        #expect(throws: IOError.self) { try IOBackendChoice.resolve(requested: "posix-aio") }
        let auto = try IOBackendChoice.resolve(requested: "auto")
        #expect(auto.kind == (IOBackendChoice.probeIOUring() == nil ? .ioUring : .fallback))
    }
}

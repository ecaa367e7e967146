import Foundation
import Testing

@testable import RaftEngine

@Suite("I/O: file system paths")
struct FileSystemTests {
    @Test("I/O: makeDirectory, kind and canonicalPath report what is on disk")
    func pathCalls() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sub = dir.file("a")
        try FileSystem.makeDirectory(sub)
        #expect(throws: IOError("mkdir", path: sub, code: EEXIST)) { try FileSystem.makeDirectory(sub) }
        #expect(throws: IOError.self) { try FileSystem.makeDirectory(dir.file("missing/child")) }
        try "x".write(toFile: dir.file("f"), atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir.file("link"), withDestinationPath: sub)

        #expect(try FileSystem.kind(of: sub, followSymlinks: false) == .directory)
        #expect(try FileSystem.kind(of: dir.file("f"), followSymlinks: false) == .regularFile)
        #expect(try FileSystem.kind(of: dir.file("link"), followSymlinks: false) == .symbolicLink)
        #expect(try FileSystem.kind(of: dir.file("link"), followSymlinks: true) == .directory)
        #expect(try FileSystem.kind(of: dir.file("nothing"), followSymlinks: false) == nil)

        let canonicalDir = try FileSystem.canonicalPath(dir.path)
        #expect(try FileSystem.canonicalPath(dir.file("link")) == canonicalDir + "/a")
        #expect(try FileSystem.canonicalPath(dir.file("a/../f")) == canonicalDir + "/f")
        #expect(throws: IOError.self) { try FileSystem.canonicalPath(dir.file("nothing")) }
    }

    @Test("I/O: an exclusive lock is refused to a second open of the same file until the first closes")
    func exclusiveLock() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let first = try DiskFile.open(dir.file("lock"), .createReadWrite)
        let second = try DiskFile.open(dir.file("lock"), .readWrite)
        #expect(try first.tryLockExclusive())
        #expect(try !second.tryLockExclusive())
        try first.close()
        #expect(try second.tryLockExclusive())
        try second.close()
    }
}

import Foundation
import Testing

@testable import RaftEngine

@Suite("Storage layout")
struct StorageLayoutTests {
    static let pieces = ["+raft", "+raft/database", "+raft/wal", "+raft/partitions", "+raft/staging", "+raft/tmp"]

    func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    @Test("Storage layout: create builds every directory, then validate accepts it")
    func createThenValidate() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let layout = StorageLayout(root: dir.path)
        #expect(try !layout.isInitialized())
        try layout.create()
        for piece in Self.pieces { #expect(isDirectory(dir.file(piece)), "\(piece)") }
        #expect(try layout.isInitialized())
        try layout.validate()
        #expect(layout.walDirectory == dir.file("+raft/wal"))
        #expect(layout.databaseDirectory == dir.file("+raft/database"))
    }

    @Test("Storage layout: create refuses an initialized storage")
    func createTwice() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let layout = StorageLayout(root: dir.path)
        try layout.create()
        #expect(throws: MetadataError.self) { try layout.create() }
    }

    @Test("Storage layout: create completes a layout left by an interrupted first start")
    func interruptedFirstStart() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("+raft/wal"), withIntermediateDirectories: true)
        try "segment".write(toFile: dir.file("+raft/wal/keep"), atomically: false, encoding: .utf8)
        let layout = StorageLayout(root: dir.path)
        try layout.prepare(createIfMissing: true)
        try layout.validate()
        #expect(FileManager.default.fileExists(atPath: dir.file("+raft/wal/keep")))
    }

    @Test(
        "Storage layout: a missing piece of an initialized storage is named and never recreated",
        arguments: ["+raft/wal", "+raft/partitions", "+raft/staging", "+raft/tmp"])
    func missingPiece(piece: String) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let layout = StorageLayout(root: dir.path)
        try layout.create()
        try FileManager.default.removeItem(atPath: dir.file(piece))
        for attempt in [{ try layout.validate() }, { try layout.prepare(createIfMissing: true) }] {
            #expect {
                try attempt()
            } throws: { error in
                guard case .layoutInvalid(let path, let problem) = error as? MetadataError else { return false }
                return path == dir.file(piece) && problem.contains("missing")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file(piece)))
    }

    @Test("Storage layout: a file where a directory belongs is refused")
    func fileInsteadOfDirectory() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let layout = StorageLayout(root: dir.path)
        try layout.create()
        try FileManager.default.removeItem(atPath: dir.file("+raft/staging"))
        try "x".write(toFile: dir.file("+raft/staging"), atomically: false, encoding: .utf8)
        #expect(throws: MetadataError.layoutInvalid(path: dir.file("+raft/staging"), problem: "is not a directory")) {
            try layout.validate()
        }
    }

    @Test("Storage layout: a symlink inside the root is accepted, one leading outside is refused")
    func symlinks() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let root = dir.file("storage")
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let layout = StorageLayout(root: root)
        try layout.create()
        try fm.moveItem(atPath: root + "/+raft/wal", toPath: root + "/wal-elsewhere")
        try fm.createSymbolicLink(atPath: root + "/+raft/wal", withDestinationPath: root + "/wal-elsewhere")
        try layout.validate()

        try fm.createDirectory(atPath: dir.file("outside"), withIntermediateDirectories: true)
        try fm.removeItem(atPath: root + "/+raft/tmp")
        try fm.createSymbolicLink(atPath: root + "/+raft/tmp", withDestinationPath: dir.file("outside"))
        #expect {
            try layout.validate()
        } throws: { error in
            guard case .layoutInvalid(let path, let problem) = error as? MetadataError else { return false }
            return path == root + "/+raft/tmp" && problem.contains("outside the storage root")
        }
    }

    @Test("Storage layout: a missing storage root is never created")
    func missingRoot() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let layout = StorageLayout(root: dir.file("unmounted"))
        #expect(throws: MetadataError.self) { try layout.prepare(createIfMissing: true) }
        #expect(!FileManager.default.fileExists(atPath: dir.file("unmounted")))
    }

    @Test("Storage layout: prepare without create refuses a new storage")
    func notInitialized() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(throws: MetadataError.notInitialized(storageRoot: dir.path)) {
            try StorageLayout(root: dir.path).prepare(createIfMissing: false)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("+raft")))
    }

    @Test("Storage layout: FNV-1a 64 matches the published test vectors")
    func fnvVectors() {
        #expect(StorageLayout.fnv1a64([]) == 0xcbf2_9ce4_8422_2325)
        #expect(StorageLayout.fnv1a64(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
        #expect(StorageLayout.fnv1a64(Array("foobar".utf8)) == 0x8594_4171_f739_67e8)
    }

    @Test("Storage layout: the replica directory is two hashed levels, then authority_partitionID")
    func replicaDirectory() throws {
        let layout = StorageLayout(root: "/srv/storage/")
        let key = try PartitionKey(parsing: "default:42")
        let hash = StorageLayout.fnv1a64(key.encoded)
        let expected = String(
            format: "/srv/storage/+raft/partitions/%02x/%02x/default_42", hash >> 56, (hash >> 48) & 0xFF)
        #expect(layout.replicaDirectory(for: key) == expected)
        #expect(layout.replicaDirectory(for: key) == StorageLayout(root: "/srv/storage").replicaDirectory(for: key))
        #expect(layout.replicaDirectory(for: try PartitionKey(parsing: "default:43")) != expected)
    }
}

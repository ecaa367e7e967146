import Foundation
import RaftConsensus
import RaftTesting
import Testing

@testable import RaftEngine

/// The snapshot stream: what goes in comes out byte for byte, and anything damaged,
/// truncated or foreign is refused.
@Suite("Snapshot stream")
struct SnapshotStreamTests {
    static let cluster = try! ClusterID(parsing: "3f2b8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a6b")
    static let partition = PartitionKey(authority: try! StorageName("default"), partitionID: try! PartitionID(7))

    /// A source tree: directories (one empty), an incompressible file over several chunks, a
    /// compressible one, an empty one, a small one.
    static func makeSource(_ dir: String, large: Int) throws -> [SnapshotItem] {
        var generator = SplitMix64(seed: 42)
        let random = (0..<large).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let text = [UInt8](String(repeating: "refs/heads/main 0123456789abcdef\n", count: large / 33).utf8)
        let files: [(String, [UInt8], UInt32)] = [
            ("repositories/a.git/objects/pack/pack-1.pack", random, 0o444),
            ("repositories/a.git/packed-refs", text, 0o644),
            ("repositories/a.git/HEAD", Array("ref: refs/heads/main\n".utf8), 0o644),
            ("state", [], 0o600),
        ]
        var items: [SnapshotItem] = []
        for d in [
            "repositories", "repositories/a.git", "repositories/a.git/objects", "repositories/a.git/objects/pack",
            "repositories/a.git/refs", "repositories/a.git/refs/heads",
        ] {
            try FileManager.default.createDirectory(atPath: dir + "/" + d, withIntermediateDirectories: true)
            items.append(SnapshotItem(path: try RelativePath(d), mode: 0o755, kind: .directory))
        }
        for (path, bytes, mode) in files {
            FileManager.default.createFile(atPath: dir + "/" + path, contents: Data(bytes))
            items.append(
                SnapshotItem(
                    path: try RelativePath(path), mode: mode,
                    kind: .file(size: UInt64(bytes.count), source: dir + "/" + path)))
        }
        return items
    }

    static func header(_ items: [SnapshotItem], index: UInt64 = 100) -> SnapshotHeader {
        SnapshotHeader(
            cluster: cluster, partition: partition, snapshotID: 9, index: LogIndex(index), term: Term(3),
            confState: ConfState(voters: [MemberID(1), MemberID(2), MemberID(3)]), items: UInt32(items.count),
            totalBytes: items.reduce(0) { $0 + $1.size })
    }

    static func stream(
        _ items: [SnapshotItem], chunk: Int, level: Int = 1
    ) throws -> ([UInt8], SnapshotStreamStatistics) {
        let writer = try SnapshotStreamWriter(
            level: level, reader: try SequentialFileReader(chunkBytes: chunk, depth: 3))
        var out: [UInt8] = []
        let stats = try writer.write(header: header(items), items: items, pieceBytes: 10_000) { piece in
            out.append(contentsOf: piece)
            return true
        }
        return (out, stats!)
    }

    static let expectation = SnapshotStreamReader.Expectation(
        cluster: cluster, partition: partition, above: LogIndex(50), maximumBytes: 1 << 30)

    /// Feeds `bytes` in pieces cut at `cuts`; the reader's error, or nil when it completed.
    static func receive(
        _ bytes: [UInt8], into dir: String, pieces: Int = 7,
        expectation: SnapshotStreamReader.Expectation = expectation,
        durable: Bool = false
    ) -> SnapshotStreamError? {
        try? FileManager.default.removeItem(atPath: dir)
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            let reader = try SnapshotStreamReader(directory: dir, expectation: expectation, durable: durable)
            let size = max(1, bytes.count / pieces)
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + size)
                try reader.consume(Array(bytes[offset..<end]))
                offset = end
            }
            try reader.finish()
            return nil
        } catch {
            return error
        }
    }

    @Test("a stream carries directories, files and modes byte for byte, compressing what compresses")
    func roundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let items = try Self.makeSource(dir.file("source"), large: 3 << 20)
        let (bytes, stats) = try Self.stream(items, chunk: 1 << 20)
        #expect(stats.fileBytes == items.reduce(0) { $0 + $1.size })
        #expect(stats.chunksStored >= 3, "random data is stored as is")
        #expect(stats.chunksCompressed >= 1, "text compresses")
        #expect(stats.streamBytes == UInt64(bytes.count))
        #expect(Self.receive(bytes, into: dir.file("staging"), durable: true) == nil)
        for item in items {
            let target = dir.file("staging/" + item.path.rawValue)
            let attributes = try FileManager.default.attributesOfItem(atPath: target)
            switch item.kind {
            case .directory:
                #expect(attributes[.type] as? FileAttributeType == .typeDirectory)
            case .file(_, let source):
                #expect(FileManager.default.contents(atPath: target) == FileManager.default.contents(atPath: source))
                #expect((attributes[.posixPermissions] as? Int).map { UInt32($0) } == item.mode)
            }
        }
    }

    @Test("a byte changed at every 97th offset is refused")
    func corruption() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let items = try Self.makeSource(dir.file("source"), large: 40_000)
        let (bytes, _) = try Self.stream(items, chunk: 16 << 10)
        var refused = 0
        for offset in stride(from: 0, to: bytes.count, by: 97) {
            var damaged = bytes
            damaged[offset] ^= 0x5A
            let error = Self.receive(damaged, into: dir.file("staging"), pieces: 3)
            #expect(error != nil, "a change at byte \(offset) of \(bytes.count) was accepted")
            if error != nil { refused += 1 }
        }
        #expect(refused == (bytes.count + 96) / 97)
    }

    @Test("a truncated stream, bytes after the trailer, another cluster, partition or an older index are refused")
    func refusals() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let items = try Self.makeSource(dir.file("source"), large: 40_000)
        let (bytes, _) = try Self.stream(items, chunk: 16 << 10)
        for cut in [0, 10, 60, bytes.count / 2, bytes.count - 1] {
            #expect(Self.receive(Array(bytes[..<cut]), into: dir.file("staging")) != nil, "cut at \(cut)")
        }
        #expect(Self.receive(bytes + [0], into: dir.file("staging")) != nil)
        var other = Self.expectation
        other.cluster = ClusterID.random()
        #expect(Self.receive(bytes, into: dir.file("staging")).map { "\($0)" } == nil)
        guard case .foreign = Self.receive(bytes, into: dir.file("staging"), expectation: other) else {
            Issue.record("another cluster's stream was not refused as foreign")
            return
        }
        other = Self.expectation
        other.partition = PartitionKey(authority: try StorageName("default"), partitionID: try PartitionID(8))
        #expect(Self.receive(bytes, into: dir.file("staging"), expectation: other) != nil)
        other = Self.expectation
        other.above = LogIndex(100)
        #expect(Self.receive(bytes, into: dir.file("staging"), expectation: other) != nil)
        other = Self.expectation
        other.maximumBytes = 1_000
        #expect(Self.receive(bytes, into: dir.file("staging"), expectation: other) != nil)
    }
}

import Foundation
import Testing

@testable import RaftEngine

@Suite("Metadata: LMDB")
struct LMDBTests {
    func bigEndian(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    @Test("Metadata: LMDB put, get, delete and reopen")
    func putGetDelete() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        do {
            let env = try LMDBEnvironment(directory: dir.path)
            let db = try env.database("partitions", create: true)
            try env.write { txn in
                try txn.put(db, Array("a".utf8), Array("1".utf8))
                try txn.put(db, Array("b".utf8), Array("2".utf8))
            }
            #expect(try env.read { try $0.get(db, Array("a".utf8)) } == Array("1".utf8))
            let deleted = try env.write { try $0.delete(db, Array("a".utf8)) }
            #expect(deleted)
            #expect(try env.write { try $0.delete(db, Array("a".utf8)) } == false)
            #expect(try env.read { try $0.get(db, Array("a".utf8)) } == nil)
        }
        // Durable across a reopen.
        let env = try LMDBEnvironment(directory: dir.path)
        let db = try env.database("partitions", create: false)
        #expect(try env.read { try $0.get(db, Array("b".utf8)) } == Array("2".utf8))
        #expect(try env.read { try $0.count(db) } == 1)
    }

    @Test("Metadata: LMDB an aborted write leaves nothing behind")
    func abortLeavesNothing() throws {
        struct Refused: Error {}
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let env = try LMDBEnvironment(directory: dir.path)
        let db = try env.database("routing", create: true)
        #expect(throws: Refused.self) {
            try env.write { txn in
                try txn.put(db, [1], [1])
                try txn.put(db, [2], [2])
                throw Refused()
            }
        }
        #expect(try env.read { try $0.count(db) } == 0)
    }

    @Test("Metadata: LMDB cursor scans in key order within bounds")
    func cursorOrder() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let env = try LMDBEnvironment(directory: dir.path)
        let db = try env.database("applied", create: true)
        var rng = SplitMix64(seed: 5)
        let keys = (0..<500).map { _ in rng.next() % 100_000 }
        try env.write { txn in
            for key in keys { try txn.put(db, bigEndian(key), bigEndian(key * 2)) }
        }
        var seen: [UInt64] = []
        try env.read { txn in
            try txn.scan(db) { key, value in
                let k = key.loadUnaligned(as: UInt64.self).bigEndian
                #expect(value.loadUnaligned(as: UInt64.self).bigEndian == k * 2)
                seen.append(k)
                return true
            }
        }
        #expect(seen == Array(Set(keys)).sorted())

        var ranged: [UInt64] = []
        try env.read { txn in
            try txn.scan(db, from: bigEndian(20_000), to: bigEndian(40_000)) { key, _ in
                ranged.append(key.loadUnaligned(as: UInt64.self).bigEndian)
                return true
            }
        }
        #expect(ranged == Array(Set(keys)).filter { $0 >= 20_000 && $0 < 40_000 }.sorted())

        var firstThree: [UInt64] = []
        try env.read { txn in
            try txn.scan(db) { key, _ in
                firstThree.append(key.loadUnaligned(as: UInt64.self).bigEndian)
                return firstThree.count < 3
            }
        }
        #expect(firstThree == Array(Array(Set(keys)).sorted().prefix(3)))
    }

    @Test("Metadata: LMDB map grows past its initial size")
    func mapGrowth() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = LMDBEnvironment.Options()
        options.initialMapSize = 1 << 20
        let env = try LMDBEnvironment(directory: dir.path, options: options)
        let db = try env.database("big", create: true)
        let value = [UInt8](repeating: 0x42, count: 4000)
        // 16 MiB of values into a 1 MiB map: several doublings, some inside one transaction.
        for batch in 0..<16 {
            try env.write { txn in
                for i in 0..<256 { try txn.put(db, bigEndian(UInt64(batch * 256 + i)), value) }
            }
        }
        #expect(env.mapSize > options.initialMapSize)
        #expect(try env.read { try $0.count(db) } == 16 * 256)
        #expect(try env.read { try $0.get(db, bigEndian(4095)) } == value)
    }

    @Test("Metadata: LMDB refuses to grow past its maximum")
    func mapLimit() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = LMDBEnvironment.Options()
        options.initialMapSize = 1 << 20
        options.maxMapSize = 2 << 20
        let env = try LMDBEnvironment(directory: dir.path, options: options)
        let db = try env.database("big", create: true)
        let value = [UInt8](repeating: 1, count: 8000)
        do {
            try env.write { txn in
                for i in 0..<1000 { try txn.put(db, bigEndian(UInt64(i)), value) }
            }
            Issue.record("8 MB fit in a 2 MiB map")
        } catch let error as LMDBError {
            #expect(error.kind == .mapFull)
        }
        #expect(try env.read { try $0.count(db) } == 0)
    }

    @Test("Metadata: LMDB a foreign or damaged data file is refused with a clear error")
    func foreignFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SplitMix64(seed: 11)
        _ = FileManager.default.createFile(atPath: dir.file("data.mdb"), contents: Data(rng.bytes(64 << 10)))
        do {
            _ = try LMDBEnvironment(directory: dir.path)
            Issue.record("opened a file of random bytes")
        } catch {
            #expect(error.kind == .notAnLMDBFile)
            #expect(error.description.contains(dir.path))
            #expect(error.description.contains("not raftd's metadata database"))
        }
    }

    @Test("Metadata: LMDB a missing named database is reported, not created")
    func missingDatabase() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let env = try LMDBEnvironment(directory: dir.path)
        #expect(throws: LMDBError.self) { try env.database("nope", create: false) }
    }
}

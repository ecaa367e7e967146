import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Partition: reference names, object IDs, log entries")
struct PartitionEntryTests {
    @Test("Partition: reference names follow git check-ref-format; bad ones are refused with the reason")
    func refNames() throws {
        for good in ["refs/heads/main", "refs/tags/v1.0", "refs/heads/feature/x-y_z", "refs/heads/@", "refs/heads/ünï"]
        {
            #expect(throws: Never.self) { try RefName(good) }
        }
        let bad: [(String, String)] = [
            ("", "empty"), ("heads/main", "not under refs/"), ("refs/heads/", "ends with /"),
            ("refs/heads/a.", "ends with ."), ("refs/heads/a..b", ".."), ("refs/heads/a@{1}", "@{"),
            ("refs//heads", "empty component"), ("refs/heads/.hidden", "starts with ."),
            ("refs/heads/x.lock", ".lock"), ("refs/heads/a b", "\" \""), ("refs/heads/a~1", "\"~\""),
            ("refs/heads/a^", "\"^\""), ("refs/heads/a:b", "\":\""), ("refs/heads/a?", "\"?\""),
            ("refs/heads/a*", "\"*\""), ("refs/heads/a[", "\"[\""), ("refs/heads/a\\b", "\"\\\\\""),
            ("refs/heads/a\u{7}", "control"), ("refs/heads/" + String(repeating: "x", count: 1100), "longer"),
        ]
        for (name, reason) in bad {
            do {
                _ = try RefName(name)
                Issue.record("accepted \(name.debugDescription)")
            } catch {
                guard case .invalidRefName(_, let why) = error else { throw error }
                #expect(why.contains(reason), "\(name.debugDescription): \(why)")
            }
        }
    }

    @Test("Partition: reference names agree with Debian's git check-ref-format on 400 generated names")
    func refNamesAgreeWithGit() throws {
        let git = "/usr/bin/git"
        try #require(FileManager.default.isExecutableFile(atPath: git), "git is installed by the test command")
        let pieces = [
            "a", "b", "main", ".", "..", "/", "@", "{", "@{", "~", "^", ":", "?", "*", "[", "\\", " ", ".lock", "-",
            "é", "\t", "x.lock", "v1.0",
        ]
        var rng = SplitMix64(seed: 0x6E7)
        var disagreements: [String] = []
        for _ in 0..<400 {
            var name = "refs/"
            for _ in 0..<(1 + Int(rng.next() % 6)) { name += pieces[Int(rng.next() % UInt64(pieces.count))] }
            let ours = (try? RefName(name)) != nil
            let process = Process()
            process.executableURL = URL(fileURLWithPath: git)
            process.arguments = ["check-ref-format", name]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            let theirs = process.terminationStatus == 0
            if ours != theirs { disagreements.append("\(name.debugDescription): ours \(ours), git \(theirs)") }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(10))")
    }

    @Test("Partition: object IDs parse 40 hex digits in either case and print in lower case")
    func objectIDs() throws {
        let text = "0123456789abcdefABCDEF0123456789abcdef01"
        let oid = try ObjectID(hex: text)
        #expect(oid.hex == text.lowercased())
        #expect(try ObjectID(bytes: oid.bytes) == oid)
        #expect(ObjectID.zero.isZero && !oid.isZero)
        for bad in ["", "0123", String(repeating: "g", count: 40), String(repeating: "0", count: 41)] {
            #expect(throws: PartitionError.self) { try ObjectID(hex: bad) }
        }
        #expect(throws: PartitionError.self) { try ObjectID(bytes: [1, 2, 3]) }
    }

    static func sample() throws -> PartitionTransaction {
        let repo = try RelativePath("@hashed/19/58/1958abc.git")
        let pool = try RelativePath("@pools/aa/bb/pool.git")
        let a = try ObjectID(hex: String(repeating: "a", count: 40))
        let b = try ObjectID(hex: String(repeating: "b", count: 40))
        return PartitionTransaction([
            .createRepository(repo, defaultBranch: try RefName("refs/heads/main")),
            .attachPack(repo, .inline(pack: [1, 2, 3], index: [4, 5])),
            .attachPack(
                repo, .attachment(contentHash: [UInt8](repeating: 9, count: 32), packBytes: 200 << 20, indexBytes: 4096)
            ),
            .updateReferences(
                repo,
                [
                    ReferenceUpdate(name: try RefName("refs/heads/main"), old: .zero, new: a),
                    ReferenceUpdate(name: try RefName("refs/tags/v1"), old: a, new: b),
                    ReferenceUpdate(name: try RefName("refs/heads/gone"), old: b, new: .zero),
                ]),
            .setHead(repo, target: try RefName("refs/heads/main")),
            .createObjectPool(pool),
            .linkToPool(repository: repo, pool: pool),
            .unlinkFromPool(repo),
            .setValue(key: "replication", value: Array("raft".utf8)),
            .deleteValue(key: "old"),
            .removeRepository(repo),
            .adoptRepository(repo),
        ])
    }

    @Test(
        "Partition: the attachment scan finds exactly the attachments of a transaction with every operation, and never traps on damage"
    )
    func attachmentScan() throws {
        let bytes = try PartitionEntryCodec.encode(try Self.sample())
        let found = PartitionEntryCodec.attachments(in: bytes)
        #expect(found == [try AttachmentID(hash: [UInt8](repeating: 9, count: 32), sizes: [200 << 20, 4096])])
        let none = try PartitionEntryCodec.encode(
            PartitionTransaction([.setValue(key: "k", value: [1]), .deleteValue(key: "k")]))
        #expect(PartitionEntryCodec.attachments(in: none) == [])
        #expect(PartitionEntryCodec.attachments(in: []) == [])
        // An attachment no node could hold: the scan says so (admission refuses the entry),
        // and neither the encoder nor the decoder takes it.
        let path = Array("r.git".utf8)
        var huge: [UInt8] = [PartitionEntryCodec.version, 0, 1, 5, 0, UInt8(path.count)] + path + [1]
        huge += [UInt8](repeating: 9, count: 32) + [0x40, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0, 0x10, 0]
        #expect(PartitionEntryCodec.attachments(in: huge) == nil)
        #expect(throws: PartitionError.self) { try PartitionEntryCodec.decode(huge) }
        #expect(throws: PartitionError.self) {
            try PartitionEntryCodec.encode(
                PartitionTransaction([
                    .attachPack(
                        try RelativePath("r.git"),
                        .attachment(contentHash: [UInt8](repeating: 9, count: 32), packBytes: 1 << 62, indexBytes: 1))
                ]))
        }
        for cut in 0..<bytes.count { _ = PartitionEntryCodec.attachments(in: Array(bytes.prefix(cut))) }
        var rng = SplitMix64(seed: 3)
        for _ in 0..<5_000 {
            var mutated = bytes
            mutated[Int(rng.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: rng.next())
            _ = PartitionEntryCodec.attachments(in: mutated)
        }
    }

    @Test("Partition: a transaction with every operation round-trips through its log encoding")
    func roundTrip() throws {
        let t = try Self.sample()
        let bytes = try PartitionEntryCodec.encode(t)
        #expect(try PartitionEntryCodec.decode(bytes) == t)
        #expect(bytes[0] == PartitionEntryCodec.version)
    }

    @Test(
        "Partition: every truncation, an unknown version or tag, and trailing bytes are damage, never a partial transaction"
    )
    func damagedEntries() throws {
        let bytes = try PartitionEntryCodec.encode(try Self.sample())
        for cut in 0..<bytes.count {
            #expect(throws: PartitionError.self) { try PartitionEntryCodec.decode(Array(bytes.prefix(cut))) }
        }
        var version = bytes
        version[0] = 9
        #expect(throws: PartitionError.self) { try PartitionEntryCodec.decode(version) }
        #expect(throws: PartitionError.self) { try PartitionEntryCodec.decode(bytes + [0]) }
        var tag = bytes
        tag[3] = 77  // the first operation's tag
        #expect(throws: PartitionError.self) { try PartitionEntryCodec.decode(tag) }
    }

    @Test("Partition: the entry decoder survives 20,000 seeded mutations and random inputs without trapping")
    func decoderFuzz() throws {
        let bytes = try PartitionEntryCodec.encode(try Self.sample())
        var rng = SplitMix64(seed: 0xF022)
        var decoded = 0
        for i in 0..<20_000 {
            var input: [UInt8]
            if i % 4 == 0 {
                input = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if !input.isEmpty { input[0] = PartitionEntryCodec.version }
            } else {
                input = bytes
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    input[Int(rng.next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            // Either refused, or a valid transaction that encodes back to the same bytes.
            if let t = try? PartitionEntryCodec.decode(input) {
                decoded += 1
                #expect(try PartitionEntryCodec.encode(t) == input)
            }
        }
        #expect(decoded < 20_000)
    }

    @Test("Partition: out-of-bounds operations are refused at encoding")
    func encodingBounds() throws {
        let repo = try RelativePath("a.git")
        let big = [UInt8](repeating: 0, count: PartitionTransaction.maximumInlinePackBytes + 1)
        #expect(throws: PartitionError.self) {
            try PartitionEntryCodec.encode(PartitionTransaction([.attachPack(repo, .inline(pack: big, index: []))]))
        }
        #expect(throws: PartitionError.self) {
            try PartitionEntryCodec.encode(PartitionTransaction([.setValue(key: "", value: [])]))
        }
        #expect(throws: PartitionError.self) {
            try PartitionEntryCodec.encode(
                PartitionTransaction([.attachPack(repo, .attachment(contentHash: [1], packBytes: 1, indexBytes: 1))]))
        }
    }
}

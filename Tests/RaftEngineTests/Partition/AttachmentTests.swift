import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Partition: attachments", .serialized)
struct AttachmentTests {
    @Test("SHA-256: FIPS 180-4 vectors, and agreement with sha256sum at every length around a block")
    func sha256() throws {
        #expect(SHA256.hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256.hex(SHA256.hash(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            SHA256.hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sha256sum") else { return }
        let dir = try TemporaryDirectory("raftd-sha")
        defer { dir.remove() }
        var rng = SplitMix64(seed: 42)
        for length in [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1_000, 65_537] {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let file = dir.file("in\(length)")
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            process.arguments = [file]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(SHA256.hex(SHA256.hash(bytes)) == String(text.prefix(64)), "length \(length)")
        }
    }

    @Test(
        "Partition: a pack above the inline bound is stored as a content-addressed attachment and applied; a partition with other replicas refuses it until the bulk transfer exists"
    )
    func largePush() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-attach")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 5)
        // 3 MiB that do not compress: the pack is above the 1 MiB inline bound.
        var rng = SplitMix64(seed: 7)
        let blob = Data((0..<(3 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        try blob.write(to: URL(fileURLWithPath: source.path + "/large.bin"))
        try RaftEngineTests.git(["add", "."], in: source.path)
        try RaftEngineTests.git(["commit", "-q", "-m", "large"], in: source.path)
        let tip = try source.oid("main")
        let pack = try source.pack(["main"])
        #expect(pack.count > PartitionTransaction.maximumInlinePackBytes)

        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let storage = nodes.cluster.storageNames[0]
        var provisioner = PartitionProvisioner(
            host: nodes.cluster.hosts[0]!, writer: nodes.writers[0], storage: storage,
            metadata: try #require(nodes.cluster.hosts[0]!.metadata(of: storage)))
        provisioner.electionMilliseconds = 30_000
        let repo = try RelativePath("@hashed/66/66/large.git")
        let main = try RefName("refs/heads/main")
        let (key, _) = try await provisioner.createRepository(repo, defaultBranch: main)
        _ = try await nodes.writers[0].commit(
            key,
            PartitionTransaction([
                .attachPack(repo, .inline(pack: pack, index: [])),
                .updateReferences(repo, [ReferenceUpdate(name: main, old: .zero, new: tip)]),
            ]))
        let path = nodes.storageRoot(0) + "/" + repo.rawValue
        try RaftEngineTests.git(["--git-dir", path, "fsck", "--full", "--strict"])
        #expect(try RaftEngineTests.git(["--git-dir", path, "rev-parse", "main"]).hasPrefix(tip.hex))
        let attachments = nodes.machine(0, key).directory + "/attachments"
        let names = try FileManager.default.contentsOfDirectory(atPath: attachments).sorted()
        #expect(names.count == 2 && names[0].hasSuffix(".idx") && names[1].hasSuffix(".pack"))
        // Named by the SHA-256 of the pack's bytes.
        let stored = Array(try Data(contentsOf: URL(fileURLWithPath: attachments + "/" + names[1])))
        #expect(names[1] == SHA256.hex(SHA256.hash(stored)) + ".pack")

        // A partition with three replicas: refused, with the reason, and nothing proposed.
        let shared = try nodes.cluster.createGroups(1)[0]
        let other = try RelativePath("@hashed/66/66/other.git")
        _ = try await nodes.commit(shared, [.createRepository(other, defaultBranch: main)])
        do {
            _ = try await nodes.commit(shared, [.attachPack(other, .inline(pack: pack, index: []))])
            Issue.record("a large pack was accepted for a partition with other replicas")
        } catch {
            guard case .refused(.invalidPack(let reason)) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(reason.contains("3 members"))
        }
    }
}

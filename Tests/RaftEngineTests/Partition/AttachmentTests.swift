import CRaftIO
import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Partition: attachments", .serialized)
struct AttachmentTests {
    @Test(
        "SHA-256: FIPS 180-4 vectors, and agreement with sha256sum at every length around a block, with and without the CPU's SHA instructions"
    )
    func sha256() throws {
        let accelerated = craft_sha256_accelerate(1) == 1
        defer { _ = craft_sha256_accelerate(1) }
        try checkSHA256()
        if accelerated {
            _ = craft_sha256_accelerate(0)
            try checkSHA256()
        }
        // Hashed in pieces of every size, the same digest.
        var rng = SplitMix64(seed: 5)
        let bytes = (0..<10_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for piece in [1, 63, 64, 65, 1_000] {
            var hasher = SHA256.Hasher()
            for start in stride(from: 0, to: bytes.count, by: piece) {
                hasher.update(Array(bytes[start..<min(start + piece, bytes.count)]))
            }
            #expect(hasher.finish() == SHA256.hash(bytes), "pieces of \(piece)")
        }
    }

    func checkSHA256() throws {
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

    /// A repository with a commit carrying `megabytes` MiB of random bytes (a pack above
    /// the inline bound), its tip and its pack.
    static func largeSource(_ path: String, megabytes: Int, seed: UInt64) throws -> (ObjectID, [UInt8]) {
        let source = try SourceRepository(at: path, commits: 5)
        var rng = SplitMix64(seed: seed)
        let blob = Data((0..<(megabytes << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        try blob.write(to: URL(fileURLWithPath: source.path + "/large.bin"))
        try RaftEngineTests.git(["add", "."], in: source.path)
        try RaftEngineTests.git(["commit", "-q", "-m", "large"], in: source.path)
        let pack = try source.pack(["main"])
        #expect(pack.count > PartitionTransaction.maximumInlinePackBytes)
        return (try source.oid("main"), pack)
    }

    static let main = try! RefName("refs/heads/main")

    /// The push of `pack` with `main` created at `tip`.
    static func pushing(_ repo: RelativePath, tip: ObjectID, pack: [UInt8]) -> PartitionTransaction {
        PartitionTransaction([
            .attachPack(repo, .inline(pack: pack, index: [])),
            .updateReferences(repo, [ReferenceUpdate(name: main, old: .zero, new: tip)]),
        ])
    }

    /// A new single-replica partition on node 0 holding `repo`, pushed `pack` and `tip`.
    static func singleReplicaPush(
        _ nodes: PartitionTestCluster, _ repo: RelativePath, tip: ObjectID, pack: [UInt8]
    ) async throws -> PartitionKey {
        let storage = nodes.cluster.storageNames[0]
        var provisioner = PartitionProvisioner(
            host: nodes.cluster.hosts[0]!, writer: nodes.writers[0], storage: storage,
            metadata: try #require(nodes.cluster.hosts[0]!.metadata(of: storage)))
        provisioner.electionMilliseconds = 30_000
        let (key, _) = try await provisioner.createRepository(repo, defaultBranch: main)
        _ = try await nodes.writers[0].commit(key, pushing(repo, tip: tip, pack: pack))
        return key
    }

    /// Pushes `pack` with `main` at `tip` into a new repository of `key`.
    static func push(
        _ nodes: PartitionTestCluster, _ key: PartitionKey, _ repo: RelativePath, tip: ObjectID, pack: [UInt8]
    ) async throws -> LogIndex {
        _ = try await nodes.commit(key, [.createRepository(repo, defaultBranch: main)])
        return try await nodes.commit(key, pushing(repo, tip: tip, pack: pack).operations)
    }

    /// The attachment files of a node's replica.
    static func attachmentNames(_ nodes: PartitionTestCluster, _ node: Int, _ key: PartitionKey) throws -> [String] {
        let directory = nodes.machine(node, key).directory + "/attachments"
        // Temporary files of a transfer in progress do not count.
        return try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasSuffix(".tmp") }.sorted()
    }

    static func checkRepository(_ nodes: PartitionTestCluster, _ node: Int, _ repo: RelativePath, tip: ObjectID) throws
    {
        let path = nodes.storageRoot(node) + "/" + repo.rawValue
        try RaftEngineTests.git(["--git-dir", path, "fsck", "--full", "--strict"])
        #expect(try RaftEngineTests.git(["--git-dir", path, "rev-parse", "main"]).hasPrefix(tip.hex), "node \(node)")
    }

    @Test("Partition: a pack above the inline bound is a content-addressed attachment, on a single-replica partition")
    func singleReplica() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-attach")
        defer { dir.remove() }
        let (tip, pack) = try Self.largeSource(dir.file("work"), megabytes: 3, seed: 7)
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let repo = try RelativePath("@hashed/66/66/large.git")
        let key = try await Self.singleReplicaPush(nodes, repo, tip: tip, pack: pack)
        try Self.checkRepository(nodes, 0, repo, tip: tip)
        let names = try Self.attachmentNames(nodes, 0, key)
        #expect(names.count == 2 && names[0].hasSuffix(".idx") && names[1].hasSuffix(".pack"))
        // Named by the SHA-256 of the pack and then the index.
        let directory = nodes.machine(0, key).directory + "/attachments/"
        let stored = Array(try Data(contentsOf: URL(fileURLWithPath: directory + names[1])))
        let index = Array(try Data(contentsOf: URL(fileURLWithPath: directory + names[0])))
        #expect(names[1] == SHA256.hex(SHA256.hash(stored + index)) + ".pack")
        #expect(nodes.attachments.allSatisfy { $0.counters.received == 0 }, "nothing to move for one replica")
    }

    @Test(
        "Partition: an attachment reaches a majority before its entry is proposed, and every replica holds it before acknowledging; git fsck passes on all three"
    )
    func threeReplicas() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-attach3")
        defer { dir.remove() }
        let (tip, pack) = try Self.largeSource(dir.file("work"), megabytes: 3, seed: 11)
        var options = PartitionAttachments.Options()
        options.chunkBytes = 256 << 10  // several chunks per part
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"), attachmentOptions: options)
        defer { nodes.stop() }
        let key = try nodes.cluster.createGroups(1)[0]
        let repo = try RelativePath("@hashed/77/77/large.git")
        let index = try await Self.push(nodes, key, repo, tip: tip, pack: pack)
        try await nodes.waitApplied(key, index)
        let leaderNames = try Self.attachmentNames(nodes, 0, key)
        for node in 0..<3 {
            try Self.checkRepository(nodes, node, repo, tip: tip)
            #expect(try Self.attachmentNames(nodes, node, key) == leaderNames, "node \(node)")
        }
        let received = nodes.attachments.map(\.counters.received).reduce(0, +)
        #expect(received == 2, "the two followers each received it once: \(nodes.attachments.map(\.counters))")
        #expect(nodes.attachments.allSatisfy { $0.counters.failedTransfers == 0 })
    }

    @Test(
        "Partition: a follower cut off during the push holds the append, fetches the attachment, then acknowledges; a damaged copy is refused and the next member asked"
    )
    func straggler() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-attach-late")
        defer { dir.remove() }
        let (tip, pack) = try Self.largeSource(dir.file("work"), megabytes: 2, seed: 13)
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let key = try nodes.cluster.createGroups(1)[0]
        let repo = try RelativePath("@hashed/88/88/large.git")
        _ = try await nodes.commit(key, [.createRepository(repo, defaultBranch: Self.main)])
        let leader = try #require(await nodes.cluster.leader(of: key))
        let late = (leader + 1) % 3
        let ids = nodes.cluster.nodeIDs
        nodes.cluster.network.isolate(ids[late], from: ids)
        let index = try await nodes.writers[leader].commit(
            key,
            Self.pushing(repo, tip: tip, pack: pack))
        #expect(try Self.attachmentNames(nodes, late, key).isEmpty)

        // Damage the copies of the leader and of the other follower (same sizes): the late
        // follower must refuse both.
        let other = 3 - leader - late
        let names = try Self.attachmentNames(nodes, leader, key)
        func packFile(_ node: Int) -> String { nodes.machine(node, key).directory + "/attachments/" + names[1] }
        let good = try Data(contentsOf: URL(fileURLWithPath: packFile(leader)))
        var bad = good
        bad[bad.count / 2] ^= 0xFF
        for node in [leader, other] { try bad.write(to: URL(fileURLWithPath: packFile(node))) }
        nodes.cluster.network.isolate(ids[late], from: ids, false)
        try await nodes.cluster.waitUntil("the late follower refused a damaged transfer from both", within: 30) {
            nodes.attachments[late].counters.failedTransfers >= 1
        }
        #expect(nodes.attachments[late].counters.damagedTransfers >= 2)
        #expect(try Self.attachmentNames(nodes, late, key).isEmpty, "nothing damaged is kept")
        #expect(nodes.machine(late, key).appliedIndex < index)

        // Repaired on the other follower only: the leader's copy is refused again, and the
        // late follower takes the other follower's.
        try good.write(to: URL(fileURLWithPath: packFile(other)))
        try await nodes.waitApplied(key, index)
        try Self.checkRepository(nodes, late, repo, tip: tip)
        let counters = nodes.attachments[late].counters
        #expect(counters.received == 1 && counters.appendsHeld >= 1, "\(counters)")
        try good.write(to: URL(fileURLWithPath: packFile(leader)))
    }

    @Test("Partition: without a majority holding the attachment nothing is proposed, and the error says who held it")
    func noMajority() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-attach-minority")
        defer { dir.remove() }
        let (tip, pack) = try Self.largeSource(dir.file("work"), megabytes: 2, seed: 17)
        var options = PartitionAttachments.Options()
        options.replicationMilliseconds = 1_500
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"), attachmentOptions: options)
        defer { nodes.stop() }
        let key = try nodes.cluster.createGroups(1)[0]
        let repo = try RelativePath("@hashed/99/99/large.git")
        _ = try await nodes.commit(key, [.createRepository(repo, defaultBranch: Self.main)])
        let leader = try #require(await nodes.cluster.leader(of: key))
        let before = try await nodes.cluster.hosts[leader]!.status(of: key).lastIndex
        let ids = nodes.cluster.nodeIDs
        // The bulk path to both followers is gone; frames still flow (the leader keeps leading).
        for other in 0..<3 where other != leader {
            nodes.cluster.network.setBulkLink(from: ids[leader], to: ids[other], up: false)
        }
        do {
            _ = try await nodes.writers[leader].commit(
                key,
                Self.pushing(repo, tip: tip, pack: pack))
            Issue.record("committed without a majority holding the attachment")
        } catch {
            guard case .timedOut(let reason) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(reason.contains("not on a majority"), "\(reason)")
            #expect(error.isRetryable)
        }
        let after = try await nodes.cluster.hosts[leader]!.status(of: key).lastIndex
        #expect(after == before, "nothing was proposed")
    }

    @Test("Bulk requests: non-members, unknown partitions, bad ranges and foreign shapes are refused")
    func badRequests() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-attach-bad")
        defer { dir.remove() }
        let (tip, pack) = try Self.largeSource(dir.file("work"), megabytes: 2, seed: 19)
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let repo = try RelativePath("@hashed/55/55/large.git")
        let single = try await Self.singleReplicaPush(nodes, repo, tip: tip, pack: pack)
        let names = try Self.attachmentNames(nodes, 0, single)
        let directory = nodes.machine(0, single).directory + "/attachments/"
        let packBytes = UInt64(try Data(contentsOf: URL(fileURLWithPath: directory + names[1])).count)
        let indexBytes = UInt64(try Data(contentsOf: URL(fileURLWithPath: directory + names[0])).count)
        let hash = try #require(names[1].split(separator: ".").first).utf8.map { $0 }
        let id = try AttachmentID(
            hash: Self.bytes(hex: String(decoding: hash, as: UTF8.self)), sizes: [packBytes, indexBytes])
        let host0 = nodes.cluster.hosts[0]!
        let ids = nodes.cluster.nodeIDs

        func refused(_ request: BulkRequest, from node: Int, _ expected: String) async {
            let answer = await host0.serve(request, from: ids[node])
            guard case .refused(let reason) = answer else {
                Issue.record("\(request) from node \(node) answered \(answer)")
                return
            }
            #expect(reason.contains(expected), "\(reason)")
        }
        // Node 1 hosts no member of the single-replica partition.
        await refused(.read(partition: single, attachment: id, offset: 0, length: 1024), from: 1, "no other member")
        await refused(.store(partition: single, attachment: id), from: 1, "no other member")
        let unknown = nodes.cluster.key(999)
        await refused(.read(partition: unknown, attachment: id, offset: 0, length: 1024), from: 1, "no replica")
        await refused(.read(partition: single, attachment: id, offset: 0, length: 1), from: 0, "not a peer")

        // A three-replica partition: node 1 is a member, but asks for what is not there.
        let shared = try nodes.cluster.createGroups(1)[0]
        _ = try await nodes.commit(shared, [.createRepository(try RelativePath("x.git"), defaultBranch: Self.main)])
        await refused(.read(partition: shared, attachment: id, offset: 0, length: 1024), from: 1, "not on this replica")
        await refused(
            .read(partition: shared, attachment: id, offset: 0, length: BulkRequest.maximumReadBytes + 1), from: 1,
            "a read of")
        await refused(.read(partition: shared, attachment: id, offset: 0, length: 0), from: 1, "a read of")
        // Pushes: only from the leader, of a pack's shape, within the size accepted.
        let leader = try #require(await nodes.cluster.leader(of: shared))
        let follower = (leader + 1) % 3
        let third = (leader + 2) % 3
        func refusedStore(_ attachment: AttachmentID, from node: Int, _ expected: String) async {
            let answer = await nodes.cluster.hosts[follower]!.serve(
                .store(partition: shared, attachment: attachment), from: ids[node])
            guard case .refused(let reason) = answer else {
                Issue.record("a store of \(attachment) from node \(node) answered \(answer)")
                return
            }
            #expect(reason.contains(expected), "\(reason)")
        }
        await refusedStore(id, from: third, "does not lead")
        await refusedStore(try AttachmentID(hash: id.hash, sizes: [1, 2, 3]), from: leader, "not a pack attachment")
        await refusedStore(try AttachmentID(hash: id.hash, sizes: [3 << 30, 1]), from: leader, "above")
        // Out of range on a replica that holds it: copy the attachment to the shared partition.
        let sharedDirectory = nodes.machine(0, shared).directory + "/attachments/"
        for name in names { try FileManager.default.copyItem(atPath: directory + name, toPath: sharedDirectory + name) }
        await refused(
            .read(partition: shared, attachment: id, offset: packBytes + indexBytes - 10, length: 11), from: 1,
            "outside")
        let answer = await host0.serve(
            .read(partition: shared, attachment: id, offset: packBytes - 4, length: 8), from: ids[1])
        let expected =
            Array(try Data(contentsOf: URL(fileURLWithPath: directory + names[1])).suffix(4))
            + Array(try Data(contentsOf: URL(fileURLWithPath: directory + names[0])).prefix(4))
        #expect(answer == .data(expected), "a read across the pack and index boundary")
        // A store whose bytes do not match the name: the receiver refuses it, keeps nothing.
        let forged = try AttachmentID(hash: [UInt8](repeating: 7, count: 32), sizes: [packBytes, indexBytes])
        let store = AttachmentStore(directory: sharedDirectory)
        let receiver = try store.receive(forged)
        try receiver.write(Array(try Data(contentsOf: URL(fileURLWithPath: directory + names[1]))))
        try receiver.write(Array(try Data(contentsOf: URL(fileURLWithPath: directory + names[0]))))
        #expect(throws: PartitionError.self) { try receiver.finish() }
        #expect(!store.contains(forged))
        #expect(try FileManager.default.contentsOfDirectory(atPath: sharedDirectory).sorted() == names)
    }

    static func bytes(hex: String) -> [UInt8] {
        let digits = Array(hex.utf8)
        return stride(from: 0, to: digits.count, by: 2).map {
            UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)!
        }
    }
}

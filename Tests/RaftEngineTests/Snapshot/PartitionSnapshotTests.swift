import Foundation
import RaftConsensus
import RaftTesting
import Testing

@testable import RaftEngine

/// A partition snapshot made on one storage (the leader's), streamed, and installed on
/// another (a follower's, whose partition holds older and other repositories): the
/// repositories come out byte-equal and pass `git fsck`, the registry and values follow,
/// and SIGKILL at any step of install leaves the old state or the new one.
@Suite("Partition snapshots")
struct PartitionSnapshotTests {
    static let cluster = try! ClusterID(parsing: "5a1b8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a6b")
    static let node = try! NodeID(parsing: "6b2c8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a6b")
    static let partition = try! PartitionKey(parsing: "default:1")
    static let a = try! RelativePath("@hashed/aa/aa/a.git")
    static let b = try! RelativePath("@hashed/bb/bb/b.git")
    static let c = try! RelativePath("@hashed/cc/cc/c.git")
    static let d = try! RelativePath("@hashed/dd/dd/d.git")
    static let pool = try! RelativePath("@pools/ee/ee/pool.git")

    static func replicaDirectory(_ root: String) -> String { root + "/+raft/partitions/p1" }

    /// Opens (creating) a storage whose partition holds the result of `transactions`,
    /// checkpointed. The store and machine are returned open.
    static func makeStorage(
        _ root: String, _ transactions: [[PartitionOperation]]
    ) throws -> (
        MetadataStore, PartitionStateMachine
    ) {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let store = try MetadataStore.open(
            storageRoot: root, clusterID: cluster, storageName: partition.authority, nodeID: node,
            createIfMissing: true)
        if try store.partition(partition) == nil { try store.registerPartition(partition, mode: .raft) }
        let machine = try PartitionStateMachine(
            storageRoot: root, directory: replicaDirectory(root), checkpointIntervalMilliseconds: 1_000_000,
            partition: partition, registry: store)
        var index = machine.appliedIndex.rawValue
        for ops in transactions {
            index += 1
            try machine.apply([
                Entry(
                    term: Term(2), index: LogIndex(index), payload: .normal(try PartitionEntryCodec.encode(.init(ops))))
            ])
        }
        try machine.checkpoint()
        return (store, machine)
    }

    /// Leader: a, pool and b (borrowing from the pool), c, values. Follower: an older a,
    /// d (which the snapshot does not have), other values.
    static func states(
        _ dir: TemporaryDirectory
    ) throws -> (leader: [[PartitionOperation]], follower: [[PartitionOperation]]) {
        let source = try SourceRepository(at: dir.file("work"), commits: 40)
        let validator = PackValidator()
        var n = 0
        func pack(_ revisions: [String]) throws -> PackReference {
            n += 1
            let v = try validator.validate(
                pack: try source.pack(revisions), repository: source.path + "/.git", pool: nil, tips: [],
                quarantine: dir.file("q\(n)"))
            return .inline(pack: v.pack, index: v.index)
        }
        let main = try RefName("refs/heads/main")
        let first = try source.oid("main")
        let v1 = try source.oid("v1")
        let full = try pack(["main", "v1"])
        try source.commit("more")
        let second = try source.oid("main")
        let more = try pack(["main", "^\(first.hex)"])
        let follower: [[PartitionOperation]] = [
            [
                .createRepository(a, defaultBranch: main), .attachPack(a, full),
                .updateReferences(a, [ReferenceUpdate(name: main, old: .zero, new: v1)]),
                .setValue(key: "old", value: [1]),
            ],
            [
                .createRepository(d, defaultBranch: main), .attachPack(d, full),
                .updateReferences(d, [ReferenceUpdate(name: main, old: .zero, new: first)]),
            ],
        ]
        let leader: [[PartitionOperation]] = [
            [
                .createRepository(a, defaultBranch: main), .attachPack(a, full),
                .updateReferences(a, [ReferenceUpdate(name: main, old: .zero, new: first)]),
            ],
            [.attachPack(a, more), .updateReferences(a, [ReferenceUpdate(name: main, old: first, new: second)])],
            [.createObjectPool(pool), .attachPack(pool, full)],
            [
                .createRepository(b, defaultBranch: main), .linkToPool(repository: b, pool: pool),
                .updateReferences(
                    b,
                    try (0..<30).map {
                        ReferenceUpdate(name: try RefName("refs/heads/many/\($0)"), old: .zero, new: v1)
                    }),
            ],
            [
                .createRepository(c, defaultBranch: main), .attachPack(c, full),
                .updateReferences(c, [ReferenceUpdate(name: main, old: .zero, new: v1)]),
                .setHead(c, target: try RefName("refs/heads/other")),
                .setValue(key: "new", value: [2, 3]),
            ],
        ]
        return (leader, follower)
    }

    /// Every file and directory inside the repositories under `root` (not `+raft`), with bytes;
    /// alternates files with the storage root taken out.
    static func repositories(_ root: String) throws -> [String: Data?] {
        var out: [String: Data?] = [:]
        guard let walk = FileManager.default.enumerator(atPath: root) else { return out }
        while let relative = walk.nextObject() as? String {
            if relative.hasPrefix("+raft") || relative.hasPrefix("parked-snapshot") {
                walk.skipDescendants()
                continue
            }
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory)
            if isDirectory.boolValue {
                // Directories above repositories (`@hashed/dd`) may stay empty after one goes.
                if relative.contains(".git") { out[relative] = .some(nil) }
            } else {
                var bytes = try Data(contentsOf: URL(fileURLWithPath: root + "/" + relative))
                if relative.hasSuffix("alternates") {
                    bytes = Data(
                        String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: root, with: "ROOT").utf8)
                }
                out[relative] = .some(bytes)
            }
        }
        return out
    }

    /// Streams `prepared` into the follower's staging as the snapshot service does;
    /// returns the staged name.
    static func stage(
        _ prepared: PreparedPartitionSnapshot, into follower: PartitionStateMachine, term: Term
    ) throws
        -> String
    {
        let name = "\(prepared.index.rawValue)-1"
        let staged = follower.snapshotStagingDirectory + "/" + name
        try FileManager.default.createDirectory(atPath: staged, withIntermediateDirectories: true)
        let reader = try SnapshotStreamReader(
            directory: staged,
            expectation: .init(
                cluster: cluster, partition: partition, above: follower.appliedIndex, maximumBytes: 1 << 30))
        let writer = try SnapshotStreamWriter(level: 1, reader: try SequentialFileReader(chunkBytes: 64 << 10))
        let header = SnapshotHeader(
            cluster: cluster, partition: partition, snapshotID: 1, index: prepared.index, term: term,
            confState: ConfState(voters: [MemberID(1)]), items: UInt32(prepared.items.count),
            totalBytes: prepared.totalBytes)
        var failure: Error?
        _ = try writer.write(header: header, items: prepared.items, pieceBytes: 100_000) { piece in
            do { try reader.consume(piece) } catch {
                failure = error
                return false
            }
            return true
        }
        if let failure { throw failure }
        try reader.finish()
        return name
    }

    @Test(
        "a snapshot made on the leader installs on a follower: repositories byte-equal, fsck clean, registry and values follow"
    )
    func installReplacesPartition() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-snapshot")
        defer { dir.remove() }
        let (leaderOps, followerOps) = try Self.states(dir)
        let (leaderStore, leader) = try Self.makeStorage(dir.file("leader"), leaderOps)
        let (followerStore, follower) = try Self.makeStorage(dir.file("follower"), followerOps)
        let prepared = try leader.prepareSnapshot(id: 1)
        #expect(prepared.index == LogIndex(5))
        // Apply goes on after the view is made; the view does not change.
        try leader.apply([
            Entry(
                term: Term(2), index: LogIndex(6),
                payload: .normal(try PartitionEntryCodec.encode(.init([.setValue(key: "later", value: [9])]))))
        ])
        let name = try Self.stage(prepared, into: follower, term: Term(2))
        let metadata = SnapshotMetadata(
            index: prepared.index, term: Term(2), confState: ConfState(voters: [MemberID(1)]))
        try follower.restore(Snapshot(metadata: metadata, data: Array(name.utf8)))
        #expect(follower.appliedIndex == prepared.index)
        #expect(follower.checkpointedIndex == prepared.index)
        #expect(follower.pendingRestore == metadata)
        #expect(follower.value("new") == [2, 3])
        #expect(follower.value("old") == nil)
        #expect(follower.value("later") == nil)
        #expect(
            try followerStore.repositories(of: Self.partition).sorted() == [Self.a, Self.b, Self.c, Self.pool].sorted())
        let installed = try Self.repositories(dir.file("follower"))
        let expected = try Self.repositories(dir.file("leader"))
        #expect(
            installed == expected,
            "\(Set(installed.keys).symmetricDifference(expected.keys).sorted().prefix(8)) \(installed.keys.filter { expected[$0] != nil && expected[$0]! != installed[$0]! }.sorted().prefix(8))"
        )
        for repository in [Self.a, Self.b, Self.c, Self.pool] {
            _ = try git(["--git-dir", dir.file("follower/" + repository.rawValue), "fsck", "--full", "--strict"])
        }
        follower.finishRestore(metadata)
        #expect(follower.pendingRestore == nil)
        #expect(!FileManager.default.fileExists(atPath: follower.snapshotStagingDirectory + "/" + name))
        #expect(!FileManager.default.fileExists(atPath: Self.replicaDirectory(dir.file("follower")) + "/install"))
        _ = leaderStore
    }

    @Test(
        "SIGKILL at every step of install: after a restart the partition is wholly the old one or wholly the snapshot's"
    )
    func killInsideInstall() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let child = builtProduct("PartitionCrashChild")
        try #require(FileManager.default.isExecutableFile(atPath: child), "build PartitionCrashChild first")
        let dir = try TemporaryDirectory("raftd-install-crash")
        defer { dir.remove() }
        let problems = try await onDedicatedThread("raftd-install-crash") { () throws -> [String] in
            let (leaderOps, followerOps) = try Self.states(dir)
            let template = dir.file("template")
            let (name, newTree) = try { () throws -> (String, [String: Data?]) in
                let (store, leader) = try Self.makeStorage(dir.file("leader"), leaderOps)
                defer { _ = store }
                let prepared = try leader.prepareSnapshot(id: 1)
                let (followerStore, follower) = try Self.makeStorage(template, followerOps)
                defer { _ = followerStore }
                let name = try Self.stage(prepared, into: follower, term: Term(2))
                // Parked where the child moves it into staging once its replica is open.
                try FileManager.default.moveItem(
                    atPath: follower.snapshotStagingDirectory + "/" + name, toPath: template + "/parked-snapshot")
                return (name, try Self.repositories(dir.file("leader")))
            }()
            let oldTree = try Self.repositories(template)
            // The uncrashed run counts the kill points.
            _ = try Process.run(URL(fileURLWithPath: "/bin/cp"), arguments: ["-a", template, dir.file("clean")])
                .waitUntilExit()
            let arguments = { (root: String, kill: Int) in
                [
                    "install", root, Self.replicaDirectory(root), "\(Self.cluster)", "\(Self.node)",
                    "\(Self.partition)",
                    name, "5", "2", "\(kill)",
                ]
            }
            let (status, output) = try PartitionCrashTests.run(child, arguments(dir.file("clean"), -1))
            guard status == 0, let line = output.split(separator: "\n").first, line.hasPrefix("points "),
                let points = Int(line.dropFirst("points ".count))
            else { return ["uncrashed install failed: \(output)"] }
            guard try Self.repositories(dir.file("clean")) == newTree else { return ["uncrashed install differs"] }
            var problems: [String] = []
            var outcomes = (old: 0, new: 0)
            for point in 0..<points {
                let root = dir.file("crash\(point)")
                _ = try Process.run(URL(fileURLWithPath: "/bin/cp"), arguments: ["-a", template, root]).waitUntilExit()
                let (killed, text) = try PartitionCrashTests.run(child, arguments(root, point))
                if killed != nil {
                    problems.append("kill point \(point): the child was not killed (\(text))")
                    continue
                }
                // A restart: the replica opens (finishing an install past its record).
                let store = try MetadataStore.open(
                    storageRoot: root, clusterID: Self.cluster, storageName: Self.partition.authority,
                    nodeID: Self.node,
                    createIfMissing: false)
                let machine = try PartitionStateMachine(
                    storageRoot: root, directory: Self.replicaDirectory(root),
                    checkpointIntervalMilliseconds: 1_000_000,
                    partition: Self.partition, registry: store)
                let tree = try Self.repositories(root)
                let registered = try store.repositories(of: Self.partition).sorted()
                if machine.appliedIndex == LogIndex(5) {
                    outcomes.new += 1
                    if tree != newTree { problems.append("kill point \(point): applied 5 but the files differ") }
                    if registered != [Self.a, Self.b, Self.c, Self.pool].sorted() {
                        problems.append("kill point \(point): new state, registry \(registered)")
                    }
                    if machine.pendingRestore?.index != LogIndex(5)
                        && FileManager.default.fileExists(
                            atPath: Self.replicaDirectory(root) + "/install")
                    {
                        problems.append("kill point \(point): an install record without a pending restore")
                    }
                } else if machine.appliedIndex == LogIndex(2) {
                    outcomes.old += 1
                    if tree != oldTree { problems.append("kill point \(point): applied 2 but the files differ") }
                    if registered != [Self.a, Self.d].sorted() {
                        problems.append("kill point \(point): old state, registry \(registered)")
                    }
                    let staging = try FileManager.default.contentsOfDirectory(atPath: machine.snapshotStagingDirectory)
                    if !staging.isEmpty { problems.append("kill point \(point): staging left: \(staging)") }
                } else {
                    problems.append("kill point \(point): applied \(machine.appliedIndex)")
                }
                try? FileManager.default.removeItem(atPath: root)
            }
            print("partition install crash test: \(points) kill points, \(outcomes.old) old, \(outcomes.new) new")
            if outcomes.old == 0 || outcomes.new == 0 { problems.append("outcomes \(outcomes): both must occur") }
            return problems
        }
        #expect(problems.isEmpty, "\(problems.prefix(10))")
    }
}

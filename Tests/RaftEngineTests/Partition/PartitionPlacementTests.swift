import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Partition: placement, pools and adoption", .serialized)
struct PartitionPlacementTests {
    @discardableResult
    func git(_ arguments: [String], in directory: String? = nil) throws -> String {
        try RaftEngineTests.git(arguments, in: directory).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func inode(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : 0
    }

    @Test(
        "Partition: new repositories get new partitions, pool members share the pool's, other partitions' repositories are refused; existing repositories are adopted in place"
    )
    func placement() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-placement")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 30)
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let host = nodes.cluster.hosts[0]!
        let storage = nodes.cluster.storageNames[0]
        let metadata = try #require(host.metadata(of: storage))
        var provisioner = PartitionProvisioner(
            host: host, writer: nodes.writers[0], storage: storage, metadata: metadata)
        provisioner.electionMilliseconds = 30_000
        let main = try RefName("refs/heads/main")

        // A new repository: a new single-node partition, registered.
        let r1 = try RelativePath("@hashed/11/11/r1.git")
        let (k1, _) = try await provisioner.createRepository(r1, defaultBranch: main)
        #expect(try metadata.partitionKey(for: r1) == k1)
        // A pool and a member: the member joins the pool's partition.
        let pool = try RelativePath("@pools/22/22/pool.git")
        let r2 = try RelativePath("@hashed/22/22/r2.git")
        let (k2, _) = try await provisioner.createObjectPool(pool)
        let (k2b, _) = try await provisioner.createRepository(r2, defaultBranch: main, pool: pool)
        #expect(k2 == k2b && k1 != k2)
        #expect(Set(try metadata.paths(of: k2)) == [pool, r2])
        // Another partition's repository is refused, with the holder named.
        do {
            _ = try await nodes.writers[0].commit(k1, PartitionTransaction([.setHead(r2, target: main)]))
            Issue.record("an operation on another partition's repository was accepted")
        } catch {
            guard case .refused(.wrongPartition) = error else {
                Issue.record("\(error)")
                return
            }
        }

        // Pools on a three-replica partition: two members, a push to one; fsck on every replica.
        let key = try nodes.cluster.createGroups(1)[0]
        let sharedPool = try RelativePath("@pools/33/33/shared.git")
        let a = try RelativePath("@hashed/33/33/a.git")
        let b = try RelativePath("@hashed/33/33/b.git")
        var index = try await nodes.commit(
            key,
            [
                .createObjectPool(sharedPool),
                .attachPack(sharedPool, .inline(pack: try source.pack(["v1"]), index: [])),
                .createRepository(a, defaultBranch: main), .linkToPool(repository: a, pool: sharedPool),
                .createRepository(b, defaultBranch: main), .linkToPool(repository: b, pool: sharedPool),
            ])
        let v1 = try source.oid("v1")
        // The push to a carries only what the pool lacks.
        index = try await nodes.commit(
            key,
            [
                .attachPack(a, .inline(pack: try source.pack(["main", "^\(v1.hex)"]), index: [])),
                .updateReferences(a, [ReferenceUpdate(name: main, old: .zero, new: try source.oid("main"))]),
                .updateReferences(b, [ReferenceUpdate(name: main, old: .zero, new: v1)]),
            ])
        try await nodes.waitApplied(key, index)
        for node in 0..<3 {
            for repository in [a, b, sharedPool] {
                try git(["--git-dir", nodes.storageRoot(node) + "/" + repository.rawValue, "fsck", "--full"])
            }
            let registry = try #require(nodes.cluster.hosts[node]!.metadata(of: nodes.cluster.storageNames[node]))
            #expect(Set(try registry.paths(of: key)) == [sharedPool, a, b], "node \(node)")
        }
        // Node 0 registered the shared partition's repositories too: its single-node
        // partition cannot create one of them. (The leader checks its own storage's
        // registry; see docs/PARTITION.md, "Placement", for the check across storages.)
        do {
            _ = try await nodes.writers[0].commit(k1, PartitionTransaction([.createRepository(a, defaultBranch: main)]))
            Issue.record("a repository of another partition was created again")
        } catch {
            guard case .refused(.wrongPartition) = error else {
                Issue.record("\(error)")
                return
            }
        }

        // Adoption: a bare repository made by git before raftd, taken in as it is.
        let adopted = try RelativePath("@hashed/44/44/old.git")
        let path = nodes.storageRoot(0) + "/" + adopted.rawValue
        try git(["clone", "-q", "--bare", source.path, path])
        try git(["--git-dir", path, "repack", "-a", "-d", "-q"])
        let pack = try #require(
            try FileManager.default.contentsOfDirectory(atPath: path + "/objects/pack").first { $0.hasSuffix(".pack") })
        let before = inode(path + "/objects/pack/" + pack)
        let (k4, _) = try await provisioner.adopt(adopted)
        #expect(try metadata.partitionKey(for: adopted) == k4)
        #expect(inode(path + "/objects/pack/" + pack) == before, "no data moved")
        // Writes verify against the adopted repository's own references.
        let oldMain = try source.oid("main")
        _ = try await nodes.writers[0].commit(
            k4, PartitionTransaction([.updateReferences(adopted, [ReferenceUpdate(name: main, old: oldMain, new: v1)])])
        )
        #expect(try git(["--git-dir", path, "rev-parse", "main"]) == v1.hex)
        try git(["--git-dir", path, "fsck", "--full"])
        // Adopting it again, or adopting what is not a repository, is refused.
        await #expect(throws: PartitionWriteError.self) { try await provisioner.adopt(adopted) }
        await #expect(throws: PartitionWriteError.self) {
            try await provisioner.adopt(try RelativePath("@hashed/55/55/none.git"))
        }
    }

    @Test(
        "Partition: a push verified against a repository that was removed and created again (or relinked) since its pack was indexed is refused; an unchanged one commits"
    )
    func repositoryIncarnation() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-incarnation")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 10)
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let key = try nodes.cluster.createGroups(1)[0]
        let main = try RefName("refs/heads/main")
        let path = try RelativePath("@hashed/66/66/again.git")
        _ = try await nodes.commit(key, [.createRepository(path, defaultBranch: main)])
        let leader = await nodes.cluster.leader(of: key) ?? 0
        let tip = try source.oid("HEAD")
        // Identity taken as the push starts, on the leader.
        let before = try #require(RepositoryIdentity.current(storageRoot: nodes.storageRoot(leader), path: path))
        // Meanwhile the repository is removed and created again.
        _ = try await nodes.commit(key, [.removeRepository(path)])
        _ = try await nodes.commit(key, [.createRepository(path, defaultBranch: main)])
        let update = PartitionOperation.updateReferences(path, [ReferenceUpdate(name: main, old: .zero, new: tip)])
        let pack = PartitionOperation.attachPack(path, .inline(pack: try source.pack(["HEAD"]), index: []))
        do {
            _ = try await nodes.writers[leader].commit(key, PartitionTransaction([pack, update]), unchanged: before)
            Issue.record("a push indexed against the removed incarnation committed")
        } catch {
            guard case .refused(.invalidOperation(let reason)) = error, reason.contains("created again") else {
                Issue.record("\(error)")
                return
            }
        }
        // Against the current incarnation it commits.
        let now = try #require(RepositoryIdentity.current(storageRoot: nodes.storageRoot(leader), path: path))
        #expect(now != before)
        _ = try await nodes.writers[leader].commit(key, PartitionTransaction([pack, update]), unchanged: now)
    }
}

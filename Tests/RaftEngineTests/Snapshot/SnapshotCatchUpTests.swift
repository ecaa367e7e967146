import Foundation
import RaftConsensus
import RaftTesting
import Testing

@testable import RaftEngine

/// A follower that is down while the leader's log is compacted past it catches up by
/// snapshot (streamed between hosts, installed in the Ready pipeline), then by log.
@Suite("Snapshots: catch-up through the host", .serialized)
struct SnapshotCatchUpTests {
    @Test(
        "a follower offline through writes and a compaction catches up by snapshot, then by log; its repository is byte-equal and fsck clean"
    )
    func followerCatchesUpBySnapshot() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-snapshot-catch-up")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 50)
        let nodes = try PartitionTestCluster(directory: dir.file("cluster")) { options in
            options.logRetentionEntries = 40
            options.compactionStepEntries = 20
            options.compactionIntervalTicks = 2
        }
        defer { nodes.stop() }
        let key = try nodes.cluster.createGroups(1)[0]
        let repo = try RelativePath("@hashed/5a/5a/snap.git")
        let main = try RefName("refs/heads/main")
        _ = try await nodes.commit(
            key,
            [
                .createRepository(repo, defaultBranch: main),
                .attachPack(repo, .inline(pack: try source.pack(["main", "v1"]), index: [])),
                .updateReferences(repo, [ReferenceUpdate(name: main, old: .zero, new: try source.oid("main"))]),
            ])
        let v1 = try source.oid("v1")
        // Node 2 goes down; 300 writes go on without it.
        let down = 2
        nodes.cluster.crash(down)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<6 {
                group.addTask {
                    for n in 0..<50 {
                        _ = try await nodes.commit(
                            key,
                            [
                                .updateReferences(
                                    repo,
                                    [
                                        ReferenceUpdate(
                                            name: try RefName("refs/heads/w\(writer)/\(n)"), old: .zero, new: v1)
                                    ]),
                                .setValue(key: "w\(writer)", value: Array("\(n)".utf8)),
                            ])
                    }
                }
            }
            try await group.waitForAll()
        }
        let leader = try #require(await nodes.cluster.leader(of: key))
        // The leader compacts past the offline follower.
        try await nodes.cluster.waitUntil("the leader's log is compacted", within: 30) {
            guard let status = try? await nodes.cluster.hosts[leader]!.status(of: key) else { return false }
            return status.firstIndex > LogIndex(100)
        }
        try nodes.cluster.start(down)
        let last = try await nodes.commit(key, [.setValue(key: "after", value: [1])])
        try await nodes.waitApplied(key, last)
        let counters = await nodes.cluster.hosts[down]!.counters()
        #expect(counters.snapshotsInstalled >= 1, "the follower caught up without a snapshot: \(counters)")
        // More writes replicate to it by log.
        var index = last
        for n in 0..<20 {
            index = try await nodes.commit(
                key,
                [
                    .updateReferences(
                        repo, [ReferenceUpdate(name: try RefName("refs/heads/after/\(n)"), old: .zero, new: v1)])
                ])
        }
        try await nodes.waitApplied(key, index)
        try await Task.sleep(nanoseconds: 300_000_000)
        let expected = try PartitionSnapshotTests.repositories(nodes.storageRoot(leader))
        let found = try PartitionSnapshotTests.repositories(nodes.storageRoot(down))
        #expect(found == expected, "\(Set(found.keys).symmetricDifference(expected.keys).sorted().prefix(8))")
        _ = try git(["--git-dir", nodes.storageRoot(down) + "/" + repo.rawValue, "fsck", "--full", "--strict"])
        #expect(nodes.machine(down, key).value("w5") == Array("49".utf8))
        #expect(nodes.machine(down, key).value("after") == [1])
    }
}

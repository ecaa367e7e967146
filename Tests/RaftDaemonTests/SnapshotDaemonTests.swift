import Foundation
import RaftAPI
import RaftClient
import RaftTesting
import Synchronization
import Testing

/// Snapshots across three `raftd serve` processes: a follower killed with kill -9 misses
/// 10,000 writes while its leader compacts its log; restarted, it catches up by snapshot,
/// then by log, and its repository is byte-equal to the leader's. In the serialized
/// cluster suite (three processes beside another three would measure overloaded cores).
extension DaemonClusterTests {
    /// Every file (with its bytes) and directory inside the repository at `path`.
    static func tree(_ path: String) throws -> [String: Data?] {
        var out: [String: Data?] = [:]
        guard let walk = FileManager.default.enumerator(atPath: path) else { return out }
        while let relative = walk.nextObject() as? String {
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: path + "/" + relative, isDirectory: &isDirectory)
            out[relative] =
                isDirectory.boolValue
                ? .some(nil) : .some(try Data(contentsOf: URL(fileURLWithPath: path + "/" + relative)))
        }
        return out
    }

    /// Creates `count` references (`refs/heads/<prefix>/<writer>/<n>`) with `writers`
    /// concurrent callers; the largest LSN acknowledged.
    static func createReferences(
        _ client: RaftClient, path: String, oid: String, prefix: String, count: Int, writers: Int
    ) async throws -> UInt64 {
        try await withThrowingTaskGroup(of: UInt64.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var last: UInt64 = 0
                    for n in stride(from: writer, to: count, by: writers) {
                        var request = Raftd_V1_UpdateReferencesRequest()
                        request.repository.relativePath = path
                        var update = Raftd_V1_ReferenceUpdate()
                        update.reference = "refs/heads/\(prefix)/\(writer)/\(n)"
                        update.oldOid = zero
                        update.newOid = oid
                        request.updates = [update]
                        var attempts = 0
                        while true {
                            attempts += 1
                            do {
                                last = max(last, try await client.updateReferences(request))
                                break
                            } catch let error as RaftClientError where attempts < 20 {
                                // A retried creation that did commit is refused as a mismatch:
                                // the reference exists, which is the outcome wanted.
                                if error.code == .referenceMismatch { break }
                                try await Task.sleep(for: .milliseconds(50))
                            }
                        }
                    }
                    return last
                }
            }
            var last: UInt64 = 0
            for try await lsn in group { last = max(last, lsn) }
            return last
        }
    }

    @Test(
        "Daemon: a follower killed through 10,000 writes and a compaction catches up by snapshot, then by log; its repository is byte-equal to the leader's and passes git fsck"
    )
    func followerCatchesUpBySnapshot() async throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary)
        defer { cluster.stopAll() }
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client()
        defer { client.close() }
        let chain = try CommitChain(length: 4, directory: cluster.directory + "/chain")
        let path = "group/snapshot.git"
        _ = try await client.createRepository(path)
        let first = Branch(path: path)
        try await Self.advance(first, chain, client)

        let show = try await client.partition(relativePath: path)
        let leader = try #require(cluster.endpoints.firstIndex(of: show.leaderAddress))
        let follower = (leader + 1) % 3
        cluster.crash(follower)

        let written = try await Self.createReferences(
            client, path: path, oid: chain.commits[0], prefix: "offline", count: 10_000, writers: 16)
        // The leader compacts its log past the follower (4,096 entries kept by default).
        try await eventually("the leader compacted its log", within: 60) {
            let metrics = try LocalHTTP.get(cluster.httpEndpoints[leader], "/metrics").body
            return LocalHTTP.metric(metrics, "raftd_log_entries_compacted_total") >= 4_000
        }

        try cluster.start(follower)
        try await cluster.waitReady(follower)
        var read = Raftd_V1_ListRefsRequest()
        read.repository.relativePath = path
        read.consistency = .staleAtLsn
        read.minLsn = written
        try await eventually("the follower applied LSN \(written)", within: 120) {
            _ = try await client.listRefs(at: cluster.endpoints[follower], read)
            return true
        }
        let metrics = try LocalHTTP.get(cluster.httpEndpoints[follower], "/metrics").body
        #expect(
            LocalHTTP.metric(metrics, "raftd_snapshots_total", label: "installed") >= 1,
            "the follower caught up without installing a snapshot")
        // Then by log.
        let after = try await Self.createReferences(
            client, path: path, oid: chain.commits[0], prefix: "online", count: 200, writers: 8)
        read.minLsn = after
        for node in 0..<3 {
            try await eventually("node \(node) applied LSN \(after)", within: 60) {
                _ = try await client.listRefs(at: cluster.endpoints[node], read)
                return true
            }
        }
        for node in 0..<3 { #expect(cluster.stop(node) == 0, "node \(node) stopped with an error") }
        let expected = try Self.tree(cluster.storagePath(leader) + "/" + path)
        for node in 0..<3 where node != leader {
            let found = try Self.tree(cluster.storagePath(node) + "/" + path)
            let differing =
                Set(found.keys).symmetricDifference(expected.keys).sorted()
                + found.keys.filter { expected[$0] != nil && expected[$0]! != found[$0]! }.sorted()
            #expect(differing.isEmpty, "node \(node) differs from the leader at \(differing.prefix(6))")
        }
        let fsck = try ClientGit.run(
            ["--git-dir", cluster.storagePath(follower) + "/" + path, "fsck", "--full", "--strict"], in: "/")
        #expect(fsck.ok, "git fsck of the follower's repository: \(fsck)")
    }
}

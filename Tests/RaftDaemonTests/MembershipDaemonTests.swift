import Foundation
import RaftAPI
import RaftClient
import RaftTesting
import Synchronization
import Testing

/// Membership across `raftd serve` processes: growth from one replica to three with writes
/// flowing, removal of the leader's replica, leadership transfer, replacement of a killed
/// node's replica, removal while a node is down, and learners that never lead.
extension DaemonClusterTests {
    /// Advances branches round-robin until `stop` is set or every branch reached the end
    /// of the chain; `writers` callers at once.
    static func writeWhile(
        _ stop: StopFlag, _ branches: [Branch], _ chain: CommitChain, _ client: RaftClient, writers: Int = 4
    ) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var done = 0
                    var round = 0
                    while !stop.isSet {
                        let mine = stride(from: writer, to: branches.count, by: writers).map { branches[$0] }
                        let open = mine.filter { $0.position + 1 < chain.commits.count }
                        if open.isEmpty { break }
                        try await advance(open[round % open.count], chain, client)
                        round += 1
                        done += 1
                        stop.wrote()
                    }
                    return done
                }
            }
            var total = 0
            for try await done in group { total += done }
            return total
        }
    }

    /// The routing entry of `key` as the node at `endpoint` holds it.
    static func route(_ client: RaftClient, _ key: String, at endpoint: String) async throws -> Raftd_V1_RouteResponse {
        try await client.route(key: key, at: endpoint)
    }

    /// The cluster's index of the node with `id` (by its client address).
    static func index(
        of id: String, in nodes: [Raftd_V1_NodeInfo], _ cluster: ProcessCluster
    ) throws -> Int {
        let address = try #require(nodes.first { $0.nodeID == id }?.clientAddress)
        return try #require(cluster.endpoints.firstIndex(of: address))
    }

    /// Three running nodes whose partitions start with `initialReplicas` members, and one
    /// repository at `path` with its first commit.
    static func clusterWithRepository(
        initialReplicas: Int, path: String
    ) async throws -> (
        ProcessCluster, RaftClient, CommitChain, Branch, key: String, nodes: [Raftd_V1_NodeInfo]
    ) {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary, initialReplicas: initialReplicas)
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client(deadline: .seconds(60))
        let chain = try CommitChain(length: 4, directory: cluster.directory + "/chain")
        let branch = Branch(path: path)
        _ = try await client.createRepository(branch.path)
        try await Self.advance(branch, chain, client)
        let key = try await client.partition(relativePath: branch.path).partitionKey
        return (cluster, client, chain, branch, key, try await client.clusterInfo().nodes)
    }

    static func runRaftd(_ cluster: ProcessCluster, _ arguments: [String]) throws -> String {
        let (status, output) = ProcessCluster.run(
            cluster.binary, arguments + ["--endpoints", cluster.endpoints[0], "--token-file", cluster.tokenFile])
        guard status == 0 else { throw DaemonTestError("raftd \(arguments.joined(separator: " ")) failed: \(output)") }
        return output
    }

    @Test(
        "Daemon: 100 single-replica partitions grow to 3 replicas (learner, catch-up, promotion) with writes flowing; no acknowledged write is lost and every replica holds the same routing entry"
    )
    func growToThreeReplicas() async throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary, initialReplicas: 1)
        defer { cluster.stopAll() }
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client(deadline: .seconds(60))
        defer { client.close() }
        let chain = try CommitChain(length: 24, directory: cluster.directory + "/chain")
        let branches = (0..<100).map { Branch(path: "grow/repo\($0).git") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for slice in 0..<4 {
                group.addTask {
                    for branch in stride(from: slice, to: branches.count, by: 4).map({ branches[$0] }) {
                        _ = try await client.createRepository(branch.path)
                        try await Self.advance(branch, chain, client)
                    }
                }
            }
            try await group.waitForAll()
        }
        var keys: Set<String> = []
        for branch in branches { keys.insert(try await client.partition(relativePath: branch.path).partitionKey) }
        #expect(keys.count == 100, "each repository has its own partition")
        // One replica each: a node without it redirects git (ls-remote, clone) to one that has it.
        for node in 0..<3 {
            let run = try runGit(
                GitHTTPTests.auth(cluster) + ["ls-remote", GitHTTPTests.url(cluster, node, branches[0].path)], in: "/")
            #expect(run.ok && run.output.contains(chain.commits[0]), "ls-remote at node \(node): \(run)")
            // With credentials in the URL git is challenged first (401) and keeps its base
            // URL after the redirect: its POST is relayed to a node with a replica.
            let url = "http://raftd:\(GitHTTPTests.token(cluster))@\(cluster.gitEndpoints[node])/\(branches[0].path)"
            let clone = try runGit(["clone", "-q", "--mirror", url, cluster.directory + "/clone\(node)"], in: "/")
            #expect(clone.ok, "clone from node \(node): \(clone.errors)")
        }

        let stop = StopFlag()
        let writes = Task { try await Self.writeWhile(stop, branches, chain, client) }
        try await eventually("writes flow", within: 30) { stop.written >= 4 }
        // The command blocks its thread until it exits: off the cooperative pool, where the
        // writers run.
        let output = try await onDedicatedThread("raftd-cli") {
            try Self.runRaftd(cluster, ["cluster", "set-replication-factor", "3", "--parallel", "8"])
        }
        let duringGrowth = stop.written
        try await eventually("writes flow after the growth", within: 30) { stop.written >= duringGrowth + 20 }
        stop.set()
        let written = try await writes.value
        #expect(output.contains("[100/100]"), "progress reached every partition: \(output.suffix(400))")
        #expect(written >= duringGrowth + 20)

        // Every partition: three voters on three nodes, the same entry on every node.
        for key in keys.sorted() {
            let entries = try await (0..<3).asyncMap { try await Self.route(client, key, at: cluster.endpoints[$0]) }
            let first = entries[0]
            #expect(first.replicas.count == 3 && first.replicas.allSatisfy { $0.role == "voter" }, "\(key): \(first)")
            #expect(Set(first.replicas.map(\.nodeID)).count == 3, "\(key) has two replicas on one node")
            for entry in entries.dropFirst() {
                #expect(
                    entry.term == first.term && entry.index == first.index
                        && entry.replicas.map(\.memberID) == first.replicas.map(\.memberID)
                        && entry.replicas.map(\.storage) == first.replicas.map(\.storage)
                        && entry.replicas.map(\.role) == first.replicas.map(\.role),
                    "\(key): routing entries differ: \(entry) vs \(first)")
            }
        }
        // Every acknowledged write, on every node.
        for node in 0..<3 { try await Self.checkReplica(cluster.endpoints[node], branches, chain, client) }
        let dry = try Self.runRaftd(cluster, ["cluster", "set-replication-factor", "3", "--dry-run"])
        #expect(dry.contains("0 replicas to add"), "a second run has nothing to do: \(dry)")
    }

    @Test(
        "Daemon: the leader's replica is removed (leadership handed over first), leadership moves on request, and a killed node's replica is replaced by joint consensus, with writes flowing"
    )
    func removeTransferReplace() async throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary, nodes: 4, initialReplicas: 3)
        defer { cluster.stopAll() }
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client(deadline: .seconds(60))
        defer { client.close() }
        let chain = try CommitChain(length: 400, directory: cluster.directory + "/chain")
        let branches = (0..<4).map { Branch(path: "change/repo\($0).git") }
        for branch in branches {
            _ = try await client.createRepository(branch.path)
            try await Self.advance(branch, chain, client)
        }
        let key = try await client.partition(relativePath: branches[0].path).partitionKey
        let stop = StopFlag()
        let writes = Task { try await Self.writeWhile(stop, [branches[0]], chain, client, writers: 1) }

        // Transfer to another voter.
        var route = try await client.route(key: key)
        let other = try #require(route.replicas.first { $0.memberID != route.leaderMember })
        let moved = try await client.transferLeadership(partition: key, to: other.memberID)
        #expect(moved.route.leaderMember == other.memberID, "\(moved)")

        // Remove the leader's own replica: it hands over, then the new leader removes it.
        route = try await client.route(key: key)
        let leaving = route.leaderMember
        let leavingNode = try #require(route.replicas.first { $0.memberID == leaving }?.nodeID)
        _ = try await client.removeReplica(partition: key, member: leaving)
        route = try await client.route(key: key)
        #expect(!route.replicas.contains { $0.memberID == leaving }, "\(route)")
        #expect(route.replicas.count == 2 && route.leaderMember != leaving)
        let leavingIndex = try Self.index(of: leavingNode, in: try await client.clusterInfo().nodes, cluster)
        try await eventually("the removed replica's repository is deleted", within: 30) {
            !FileManager.default.fileExists(atPath: cluster.storagePath(leavingIndex) + "/" + branches[0].path)
        }
        // Back to three: the placement policy picks the free node.
        let added = try await client.addReplica(partition: key, waitCaughtUp: true)
        _ = try await client.promoteReplica(partition: key, member: added.memberID)

        // Kill a follower's node and replace its replica.
        route = try await client.route(key: key)
        let victim = try #require(route.replicas.first { $0.memberID != route.leaderMember })
        let nodes = try await client.clusterInfo().nodes
        let victimIndex = try Self.index(of: victim.nodeID, in: nodes, cluster)
        let spare = try #require(nodes.first { node in !route.replicas.contains { $0.nodeID == node.nodeID } })
        cluster.crash(victimIndex)
        let replaced = try await client.replaceReplica(partition: key, member: victim.memberID)
        #expect(replaced.route.replicas.count == 3, "\(replaced)")
        #expect(!replaced.route.replicas.contains { $0.memberID == victim.memberID }, "\(replaced)")
        #expect(replaced.route.replicas.contains { $0.nodeID == spare.nodeID }, "\(replaced)")
        #expect(replaced.route.replicas.allSatisfy { $0.role == "voter" }, "\(replaced)")

        let afterChanges = stop.written
        try await eventually("writes flow after the changes", within: 30) { stop.written >= afterChanges + 10 }
        stop.set()
        let written = try await writes.value
        #expect(written > 10, "writes stalled during the changes (\(written))")
        for node in 0..<4 where node != victimIndex && node != leavingIndex {
            try await Self.checkReplica(cluster.endpoints[node], [branches[0]], chain, client)
        }
    }

    @Test(
        "Daemon: a replica removed while its node is down deletes its data when the node comes back; a learner never leads, even when every voter is down"
    )
    func offlineRemovalAndLearners() async throws {
        let (cluster, client, chain, branch, key, nodes) = try await Self.clusterWithRepository(
            initialReplicas: 3, path: "offline/repo.git")
        defer {
            client.close()
            cluster.stopAll()
        }
        var route = try await client.route(key: key)
        let victim = try #require(route.replicas.first { $0.memberID != route.leaderMember })
        let victimIndex = try Self.index(of: victim.nodeID, in: nodes, cluster)
        let victimStorage = try #require(nodes.first { $0.nodeID == victim.nodeID }?.storages.first)
        cluster.crash(victimIndex)
        let survivors = cluster.endpoints.indices.filter { $0 != victimIndex }.map { cluster.endpoints[$0] }
        let live = try cluster.client(endpoints: survivors, deadline: .seconds(60))
        defer { live.close() }
        _ = try await live.removeReplica(partition: key, member: victim.memberID)
        try await Self.advance(branch, chain, live)
        #expect(FileManager.default.fileExists(atPath: cluster.storagePath(victimIndex) + "/" + branch.path))
        try cluster.start(victimIndex)
        try await cluster.waitReady(victimIndex)
        try await eventually("the node that was down deleted the removed replica", within: 60) {
            !FileManager.default.fileExists(atPath: cluster.storagePath(victimIndex) + "/" + branch.path)
        }
        // Logged once the registry entry is gone too (just after the files).
        try await eventually("the node logged the removal", within: 10) {
            ((try? String(contentsOfFile: cluster.logFile(victimIndex), encoding: .utf8)) ?? "").contains(
                "left its group")
        }

        // The removed node gets a learner back; then both voters go down.
        let learner = try await client.addReplica(
            partition: key, storage: victimStorage, waitCaughtUp: true)
        route = try await client.route(key: key)
        let voters = route.replicas.filter { $0.role == "voter" }
        #expect(voters.count == 2)
        let termBefore = try await client.partition(key: key, at: cluster.endpoints[victimIndex]).term
        for voter in voters {
            cluster.crash(try Self.index(of: voter.nodeID, in: nodes, cluster))
        }
        try await Task.sleep(for: cluster.electionTimeout * 6)
        let seen = try await client.partition(key: key, at: cluster.endpoints[victimIndex])
        #expect(seen.leaderMember != "\(learner.memberID)", "the learner took the lead: \(seen)")
        #expect(seen.term == termBefore, "the learner campaigned (term \(termBefore) -> \(seen.term))")
    }
}

extension DaemonClusterTests {
    @Test(
        "Daemon: a storage that left and rejoins gets a new incarnation; the replica it held under the old one is deleted at start and is not re-created; a new one is added"
    )
    func rejoinedStorage() async throws {
        let (cluster, client, chain, branch, key, nodes) = try await Self.clusterWithRepository(
            initialReplicas: 1, path: "rejoin/repo.git")
        defer {
            client.close()
            cluster.stopAll()
        }
        let binary = cluster.binary
        let route = try await client.route(key: key)
        let home = try Self.index(of: try #require(route.replicas.first?.nodeID), in: nodes, cluster)
        let other = (home + 1) % 3
        let otherStorage = try #require(nodes.first { $0.clientAddress == cluster.endpoints[other] }?.storages.first)
        let added = try await client.addReplica(partition: key, storage: otherStorage, waitCaughtUp: true)
        try await eventually("the learner applied the repository", within: 30) {
            FileManager.default.fileExists(atPath: cluster.storagePath(other) + "/" + branch.path)
        }

        // The storage leaves (its node stops) and rejoins with a new incarnation.
        #expect(cluster.stop(other) == 0)
        let rejoin = ProcessCluster.run(
            binary, ["storage", "rejoin", "--config", cluster.configFile(other), "--storage", otherStorage])
        #expect(rejoin.0 == 0 && rejoin.1.contains("-> i2"), "\(rejoin)")
        try cluster.start(other)
        try await cluster.waitReady(other)
        try await eventually("the old incarnation's replica is deleted", within: 30) {
            !FileManager.default.fileExists(atPath: cluster.storagePath(other) + "/" + branch.path)
        }
        try await eventually("the node said why it deleted the replica", within: 10) {
            ((try? String(contentsOfFile: cluster.logFile(other), encoding: .utf8)) ?? "").contains(
                "was created on incarnation i1")
        }
        // The leader's audit does not re-create it there (the member names the old incarnation).
        try await Task.sleep(for: .seconds(3))
        #expect(!FileManager.default.fileExists(atPath: cluster.storagePath(other) + "/" + branch.path))
        // The operator replaces it: remove the old member, add a new one on the rejoined storage.
        _ = try await client.removeReplica(partition: key, member: added.memberID)
        let again = try await client.addReplica(partition: key, storage: otherStorage, waitCaughtUp: true)
        #expect(again.memberID != added.memberID)
        var read = Raftd_V1_ListRefsRequest()
        read.repository.relativePath = branch.path
        read.consistency = .staleAtLsn
        read.minLsn = branch.lastLSN
        try await eventually("the new learner serves the repository", within: 30) {
            guard let refs = try? await client.listRefs(at: cluster.endpoints[other], read) else { return false }
            return refs.references.first { $0.name == "refs/heads/main" }?.oid == chain.commits[branch.position]
        }
    }
}

extension DaemonClusterTests {
    @Test(
        "Daemon: a learner added to a partition whose log was compacted catches up by snapshot, then by log"
    )
    func learnerCatchesUpBySnapshot() async throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary, initialReplicas: 1)
        defer { cluster.stopAll() }
        // A short retention window: the log is compacted after a few hundred writes.
        for i in 0..<3 {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: cluster.configFile(i)))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("\n[log]\nretention_entries = 16\ncompaction_step_entries = 16\n".utf8))
            try handle.close()
        }
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client(deadline: .seconds(60))
        defer { client.close() }
        let chain = try CommitChain(length: 4, directory: cluster.directory + "/chain")
        let branch = Branch(path: "compacted/repo.git")
        _ = try await client.createRepository(branch.path)
        try await Self.advance(branch, chain, client)
        let key = try await client.partition(relativePath: branch.path).partitionKey
        let nodes = try await client.clusterInfo().nodes
        let home = try Self.index(
            of: try #require(try await client.route(key: key).replicas.first?.nodeID), in: nodes, cluster)
        let written = try await Self.createReferences(
            client, path: branch.path, oid: chain.commits[0], prefix: "before", count: 300, writers: 8)
        try await eventually("the leader compacted its log", within: 60) {
            let metrics = try LocalHTTP.get(cluster.httpEndpoints[home], "/metrics").body
            return LocalHTTP.metric(metrics, "raftd_log_entries_compacted_total") >= 100
        }
        let other = (home + 1) % 3
        let storage = try #require(nodes.first { $0.clientAddress == cluster.endpoints[other] }?.storages.first)
        let added = try await client.addReplica(partition: key, storage: storage, waitCaughtUp: true)
        _ = try await client.promoteReplica(partition: key, member: added.memberID)
        let after = try await Self.createReferences(
            client, path: branch.path, oid: chain.commits[0], prefix: "after", count: 50, writers: 4)
        var read = Raftd_V1_ListRefsRequest()
        read.repository.relativePath = branch.path
        read.consistency = .staleAtLsn
        read.minLsn = max(written, after)
        try await eventually("the new replica applied LSN \(read.minLsn)", within: 60) {
            guard let refs = try? await client.listRefs(at: cluster.endpoints[other], read) else { return false }
            return refs.references.count == 351
        }
        let metrics = try LocalHTTP.get(cluster.httpEndpoints[other], "/metrics").body
        #expect(
            LocalHTTP.metric(metrics, "raftd_snapshots_total", label: "installed") >= 1,
            "the learner caught up without a snapshot")
    }
}

extension Sequence {
    func asyncMap<T>(_ body: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await body(element)) }
        return out
    }
}

/// Tells writer tasks to stop, and counts their acknowledged writes.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    private let writes = Atomic<Int>(0)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
    func wrote() { writes.wrappingAdd(1, ordering: .relaxed) }
    var written: Int { writes.load(ordering: .relaxed) }
}

import Foundation
import RaftConsensus
import RaftTesting
import Testing

@testable import RaftEngine

@Suite("Partition: local and raft replication modes", .serialized)
struct ReplicationModeTests {
    static let main = try! RefName("refs/heads/main")

    /// A provisioner of node 0's storage minting partitions in `mode`.
    static func provisioner(_ nodes: PartitionTestCluster, _ mode: ReplicationMode) throws -> PartitionProvisioner {
        let storage = nodes.cluster.storageNames[0]
        var provisioner = PartitionProvisioner(
            host: nodes.cluster.hosts[0]!, writer: nodes.writers[0], storage: storage,
            metadata: try #require(nodes.cluster.hosts[0]!.metadata(of: storage)))
        provisioner.electionMilliseconds = 30_000
        provisioner.mode = mode
        return provisioner
    }

    /// Creates `refs/heads/w<n>` at `tip`; returns its index.
    static func write(
        _ writer: PartitionWriter, _ key: PartitionKey, _ repo: RelativePath, _ n: Int, tip: ObjectID
    ) async throws -> LogIndex {
        try await writer.commit(
            key,
            PartitionTransaction([
                .updateReferences(repo, [ReferenceUpdate(name: try RefName("refs/heads/w\(n)"), old: .zero, new: tip)])
            ]))
    }

    @Test(
        "Partition: local -> raft -> local -> raft with writes in between: nothing lost, LSNs continuous, no ticks while local"
    )
    func toggling() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-modes")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 20)
        let tip = try source.oid("main")
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let host = nodes.cluster.hosts[0]!
        let repo = try RelativePath("@hashed/11/22/modes.git")
        let (key, created) = try await Self.provisioner(nodes, .local).createRepository(repo, defaultBranch: Self.main)
        let metadata = try #require(host.metadata(of: nodes.cluster.storageNames[0]))
        #expect(try metadata.partition(key)?.mode == .local)
        var indices: [LogIndex] = [
            try await nodes.writers[0].commit(
                key,
                PartitionTransaction([
                    .attachPack(repo, .inline(pack: try source.pack(["main"]), index: [])),
                    .updateReferences(repo, [ReferenceUpdate(name: Self.main, old: .zero, new: tip)]),
                ]))
        ]
        #expect(indices[0] > created)
        var written = 0
        for (phase, mode) in [ReplicationMode.local, .raft, .local, .raft].enumerated() {
            if phase > 0 { try await host.setReplicationMode(mode, of: key) }
            let status = try await host.status(of: key)
            #expect(status.mode == mode && status.role == .leader && status.members == 1, "\(status)")
            #expect(try metadata.partition(key)?.mode == mode)
            let ticksBefore = await host.counters().ticksGiven
            for _ in 0..<10 {
                written += 1
                indices.append(try await Self.write(nodes.writers[0], key, repo, written, tip: tip))
            }
            // Reads work in either mode.
            _ = try await host.read(key)
            if mode == .local {
                #expect(await host.counters().ticksGiven == ticksBefore, "a local partition is never ticked")
                #expect(try await host.status(of: key).residency != .awake)
            }
        }
        // Every write took the next index: no LSN skipped or reused across the switches.
        for (a, b) in zip(indices, indices.dropFirst()) { #expect(b.rawValue == a.rawValue + 1, "\(indices)") }
        let path = nodes.storageRoot(0) + "/" + repo.rawValue
        try RaftEngineTests.git(["--git-dir", path, "fsck", "--full", "--strict"])
        let refs = try RaftEngineTests.git(["--git-dir", path, "for-each-ref", "--format=%(refname)", "refs/heads/w*"])
        #expect(refs.split(separator: "\n").count == written)
    }

    @Test(
        "Partition: a local partition leads from its first request after a restart (no election timeout, no ticks), keeps its mode, and refuses membership changes"
    )
    func restartAndRefusals() async throws {
        let dir = try TemporaryDirectory("raftd-modes-restart")
        defer { dir.remove() }
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let repo = try RelativePath("@hashed/33/44/restart.git")
        let (key, _) = try await Self.provisioner(nodes, .local).createRepository(repo, defaultBranch: Self.main)
        let value = { (n: Int) in PartitionTransaction([.setValue(key: "k", value: Array("v\(n)".utf8))]) }
        let before = try await nodes.writers[0].commit(key, value(1))

        // Refusals: members cannot change in local mode; a three-member group cannot go local.
        let host = nodes.cluster.hosts[0]!
        await #expect(throws: HostError.self) {
            _ = try await host.changeMembership(key, ConfChange([.addLearner(MemberID(2))]))
        }
        let shared = try nodes.cluster.createGroups(1)[0]
        _ = try await nodes.commit(shared, [.setValue(key: "k", value: [1])])
        let leader = try #require(await nodes.cluster.leader(of: shared))
        do {
            try await nodes.cluster.hosts[leader]!.setReplicationMode(.local, of: shared)
            Issue.record("a three-member partition went local")
        } catch {
            #expect("\(error)".contains("3 members"), "\(error)")
        }
        #expect(try await nodes.cluster.hosts[leader]!.status(of: shared).mode == .raft)

        // Recorded as local while its group has other members (an interrupted or foreign
        // change): loaded as raft, so it is ticked and can elect.
        try #require(host.metadata(of: nodes.cluster.storageNames[0])).updateReplicationMode(.local, of: shared)

        nodes.cluster.crash(0)
        try nodes.cluster.start(0)
        let restarted = nodes.cluster.hosts[0]!
        #expect(try await restarted.status(of: key).mode == .local)
        #expect(try await restarted.status(of: shared).mode == .raft)
        let writer = PartitionWriter(host: restarted, catchUpMilliseconds: 30_000) { k in
            nodes.cluster.machines.existing(node: 0, replica: ReplicaKey(partition: k, member: MemberID(1)))
        }
        // The first request finds no leader and makes the sole voter campaign at once: with
        // no ticks given to it, waiting for an election timeout would never end.
        var after = LogIndex.zero
        for attempt in 0..<200 {
            do {
                after = try await writer.commit(key, value(2))
                break
            } catch {
                guard error.isRetryable, attempt < 199 else { throw error }
                try await Task.sleep(nanoseconds: 5_000_000)
            }
        }
        #expect(after > before)
        let status = try await restarted.status(of: key)
        #expect(status.mode == .local && status.role == .leader && status.residency != .awake, "\(status)")
        #expect(nodes.machine(0, key).value("k") == Array("v2".utf8))

        // Every node restarted: the three-member group's replicas are all dormant, and the
        // writer (which reads status rather than proposing) still finds it a leader.
        for node in 1..<3 {
            nodes.cluster.crash(node)
            try nodes.cluster.start(node)
        }
        let writers = (0..<3).map { node in
            PartitionWriter(host: nodes.cluster.hosts[node]!, catchUpMilliseconds: 30_000) { k in
                nodes.cluster.machines.existing(
                    node: node, replica: ReplicaKey(partition: k, member: MemberID(UInt64(node + 1))))
            }
        }
        let deadline = Date().addingTimeInterval(30)
        var committed = false
        while !committed {
            for writer in writers where !committed {
                do {
                    _ = try await writer.commit(shared, PartitionTransaction([.setValue(key: "k", value: [2])]))
                    committed = true
                } catch {
                    guard error.isRetryable, Date() < deadline else { throw error }
                }
            }
            if !committed { try await Task.sleep(nanoseconds: 20_000_000) }
        }
    }

    @Test("Partition: every local partition of a storage becomes a single-node Raft cluster in one call")
    func convertStorage() async throws {
        let dir = try TemporaryDirectory("raftd-modes-convert")
        defer { dir.remove() }
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let provisioner = try Self.provisioner(nodes, .local)
        var keys: [PartitionKey] = []
        for n in 0..<3 {
            keys.append(
                try await provisioner.createRepository(
                    try RelativePath("@hashed/55/66/convert\(n).git"), defaultBranch: Self.main
                ).0)
        }
        // A Raft partition of the same storage stays as it is.
        let raft = try await Self.provisioner(nodes, .raft).createRepository(
            try RelativePath("@hashed/55/66/raft.git"), defaultBranch: Self.main
        ).0
        let host = nodes.cluster.hosts[0]!
        let converted = try await host.convertLocalPartitionsToRaft(on: nodes.cluster.storageNames[0])
        #expect(Set(converted) == Set(keys))
        let metadata = try #require(host.metadata(of: nodes.cluster.storageNames[0]))
        for key in keys + [raft] {
            #expect(try await host.status(of: key).mode == .raft)
            #expect(try metadata.partition(key)?.mode == .raft)
            _ = try await nodes.writers[0].commit(key, PartitionTransaction([.setValue(key: "after", value: [1])]))
        }
        #expect(try await host.convertLocalPartitionsToRaft(on: nodes.cluster.storageNames[0]).isEmpty)
    }

    @Test("Partition: an idle local partition shrinks to a dormant record and leads again from it without an election")
    func localDormancy() async throws {
        let dir = try TemporaryDirectory("raftd-modes-dormant")
        defer { dir.remove() }
        let nodes = try PartitionTestCluster(directory: dir.file("cluster")) { $0.dormantAfterQuiescedTicks = 20 }
        defer { nodes.stop() }
        let repo = try RelativePath("@hashed/77/88/dormant.git")
        let (key, _) = try await Self.provisioner(nodes, .local).createRepository(repo, defaultBranch: Self.main)
        let host = nodes.cluster.hosts[0]!
        for n in 0..<3 {
            _ = try await nodes.writers[0].commit(key, PartitionTransaction([.setValue(key: "k", value: [UInt8(n)])]))
            try await nodes.cluster.waitUntil("the local partition went dormant", within: 30) {
                (try? await host.status(of: key).residency) == .dormant
            }
        }
        let status = try await host.status(of: key)
        #expect(status.mode == .local && status.role == .leader, "\(status)")
        let term = status.term
        _ = try await nodes.writers[0].commit(key, PartitionTransaction([.setValue(key: "k", value: [9])]))
        #expect(try await host.status(of: key).term == term, "a dormant leader resumes without an election")
        #expect(nodes.machine(0, key).value("k") == [9])
    }
}

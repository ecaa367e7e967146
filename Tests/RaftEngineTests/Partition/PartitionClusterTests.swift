import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Partition: replicated through Raft", .serialized)
struct PartitionClusterTests {
    /// Runs git and returns its output without the trailing newline.
    @discardableResult
    func git(_ arguments: [String], in directory: String? = nil) throws -> String {
        try RaftEngineTests.git(arguments, in: directory).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(
        "Partition: pushes verified on the leader and applied through Raft on 3 nodes: every replica passes git fsck, lists the same refs; of conflicting transactions exactly one wins"
    )
    func replicatedRepository() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-partition")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 200)
        let nodes = try PartitionTestCluster(directory: dir.file("cluster"))
        defer { nodes.stop() }
        let key = try nodes.cluster.createGroups(1)[0]
        let repo = try RelativePath("@hashed/19/58/1958.git")
        let main = try RefName("refs/heads/main")
        let topic = try RefName("refs/heads/topic")

        // First push: the repository, its history as one pack, three references, a value.
        var index = try await nodes.commit(
            key,
            [
                .createRepository(repo, defaultBranch: main),
                .attachPack(repo, .inline(pack: try source.pack(["main", "topic", "v1"]), index: [])),
                .updateReferences(
                    repo,
                    [
                        ReferenceUpdate(name: main, old: .zero, new: try source.oid("main")),
                        ReferenceUpdate(name: topic, old: .zero, new: try source.oid("topic")),
                        ReferenceUpdate(name: try RefName("refs/tags/v1"), old: .zero, new: try source.oid("v1")),
                    ]),
                .setValue(key: "owner", value: Array("test".utf8)),
            ])
        // Second push: a thin pack of new commits on main (as `git push` sends), topic deleted.
        let oldMain = try source.oid("main")
        for n in 1...5 { try source.commit("second push \(n)") }
        index = try await nodes.commit(
            key,
            [
                .attachPack(repo, .inline(pack: try source.pack(["main", "^\(oldMain.hex)"], thin: true), index: [])),
                .updateReferences(
                    repo,
                    [
                        ReferenceUpdate(name: main, old: oldMain, new: try source.oid("main")),
                        ReferenceUpdate(name: topic, old: try source.oid("topic"), new: .zero),
                    ]),
            ])
        // A reference update whose expected old value is stale is refused with both values.
        do {
            _ = try await nodes.commit(
                key, [.updateReferences(repo, [ReferenceUpdate(name: main, old: oldMain, new: oldMain)])])
            Issue.record("a stale expected value was accepted")
        } catch {
            #expect(
                error
                    == .refused(
                        .referenceStateMismatch(
                            repository: repo.rawValue, reference: main.rawValue, expected: oldMain,
                            actual: try source.oid("main"))))
        }

        // Eight candidates for main, each on its own branch, pushed in one pack; then eight
        // concurrent transactions that each move main from the same old value.
        let base = try source.oid("main")
        var candidates: [ObjectID] = []
        for n in 0..<8 {
            try git(["checkout", "-q", "-b", "c\(n)", base.hex], in: source.path)
            candidates.append(try source.commit("candidate \(n)"))
        }
        try git(["checkout", "-q", "main"], in: source.path)
        index = try await nodes.commit(
            key,
            [
                .attachPack(
                    repo,
                    .inline(pack: try source.pack((0..<8).map { "c\($0)" } + ["^\(base.hex)"], thin: true), index: [])),
                .updateReferences(
                    repo,
                    try (0..<8).map {
                        ReferenceUpdate(name: try RefName("refs/heads/c\($0)"), old: .zero, new: candidates[$0])
                    }),
            ])
        let outcomes = await withTaskGroup(of: Result<LogIndex, PartitionWriteError>.self) { group in
            for candidate in candidates {
                group.addTask {
                    do throws(PartitionWriteError) {
                        return .success(
                            try await nodes.commit(
                                key, [.updateReferences(repo, [ReferenceUpdate(name: main, old: base, new: candidate)])]
                            ))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var all: [Result<LogIndex, PartitionWriteError>] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        let won = outcomes.compactMap { try? $0.get() }
        #expect(won.count == 1, "\(outcomes)")
        for case .failure(let error) in outcomes {
            guard case .refused(.referenceStateMismatch(_, let reference, let expected, _)) = error else {
                Issue.record("a losing transaction failed otherwise: \(error)")
                continue
            }
            #expect(reference == main.rawValue && expected == base)
        }
        index = max(index, won.max() ?? index)
        try await nodes.waitApplied(key, index)

        var listings: [String] = []
        for node in 0..<3 {
            let path = nodes.storageRoot(node) + "/" + repo.rawValue
            try git(["--git-dir", path, "fsck", "--full", "--strict"])
            #expect(try git(["--git-dir", path, "log", "--oneline", "main"]).split(separator: "\n").count > 200)
            try git(["--git-dir", path, "log", "--all", "--oneline"])
            listings.append(try git(["--git-dir", path, "for-each-ref", "--format=%(refname) %(objectname)"]))
            #expect(nodes.machine(node, key).value("owner") == Array("test".utf8))
        }
        #expect(listings.allSatisfy { $0 == listings[0] }, "\(listings)")
        let winner = try git(["--git-dir", nodes.storageRoot(0) + "/" + repo.rawValue, "rev-parse", "main"])
        #expect(candidates.map(\.hex).contains(winner))
        #expect(!listings[0].contains("refs/heads/topic"))
        // Reads on every replica: linearizable (a follower's goes through the leader), by
        // lease, and "applied at least" the last write's LSN; all see the same references.
        let winnerOID = try ObjectID(hex: winner)
        for node in 0..<3 {
            let reader = PartitionReader(host: nodes.cluster.hosts[node]!) { nodes.machine(node, $0) }
            for consistency in [PartitionReadConsistency.linearizable, .lease, .appliedAtLeast(index)] {
                let (lsn, references) = try await reader.references(key, repository: repo, consistency: consistency)
                #expect(lsn >= index, "\(consistency) on node \(node)")
                #expect(references?[main] == winnerOID && references?[topic] == nil && references?.count == 10)
            }
            let missing = try await reader.references(
                key, repository: try RelativePath("@hashed/no/ne/none.git"), consistency: .appliedAtLeast(index))
            #expect(missing.references == nil)
            do {
                _ = try await reader.references(
                    key, repository: repo, consistency: .appliedAtLeast(LogIndex(index.rawValue + 1_000)),
                    deadlineMilliseconds: 50)
                Issue.record("a read past the applied index did not wait for its deadline")
            } catch {
                guard case .notYetApplied = error else {
                    Issue.record("\(error)")
                    continue
                }
            }
        }
        // The checkpointers recorded what was applied, in shared rounds.
        try await nodes.cluster.waitUntil("every replica checkpointed the pushes") {
            (0..<3).allSatisfy { nodes.machine($0, key).checkpointedIndex >= index }
        }
    }
}

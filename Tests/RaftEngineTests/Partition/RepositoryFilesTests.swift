import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Partition: repository files in git's formats")
struct RepositoryFilesTests {
    @Test(
        "Partition: a repository written without git (pack linked, refs by lock and rename) passes git fsck and git log"
    )
    func writtenRepositoryIsGit() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-repo")
        defer { dir.remove() }
        // A source repository made by git: three commits on main, one on a branch, a tag.
        let work = dir.file("work")
        try git(["init", "-q", "-b", "main", work])
        for n in 1...3 {
            try "line \(n)\n".write(toFile: work + "/f.txt", atomically: true, encoding: .utf8)
            try git(["add", "f.txt"], in: work)
            try git(["commit", "-q", "-m", "commit \(n)"], in: work)
        }
        try git(["tag", "v1"], in: work)
        try git(["checkout", "-q", "-b", "topic"], in: work)
        try git(["commit", "-q", "--allow-empty", "-m", "topic"], in: work)
        let mainTip = try ObjectID(
            hex: try git(["rev-parse", "main"], in: work).trimmingCharacters(in: .whitespacesAndNewlines))
        let topicTip = try ObjectID(
            hex: try git(["rev-parse", "topic"], in: work).trimmingCharacters(in: .whitespacesAndNewlines))
        let tag = try ObjectID(
            hex: try git(["rev-parse", "v1"], in: work).trimmingCharacters(in: .whitespacesAndNewlines))
        try FileManager.default.createDirectory(atPath: dir.file("staging"), withIntermediateDirectories: true)
        let packName = try git(["pack-objects", "--all", "--revs", dir.file("staging/pack")], in: work)
        let stem = dir.file("staging/pack-" + packName.trimmingCharacters(in: .whitespacesAndNewlines))

        // The replica's repository, written by the apply path.
        let repo = RepositoryFiles(path: dir.file("storage/@hashed/ab/cd/abcd.git"))
        let main = try RefName("refs/heads/main")
        try repo.create(defaultBranch: main)
        let name = try repo.attachPack(pack: stem + ".pack", index: stem + ".idx")
        #expect(stem.hasSuffix(name))
        try repo.setReference(main, to: mainTip)
        try repo.setReference(try RefName("refs/heads/topic"), to: topicTip)
        try repo.setReference(try RefName("refs/tags/v1"), to: tag)
        try git(["--git-dir", repo.path, "fsck", "--full", "--strict"])
        #expect(try git(["--git-dir", repo.path, "log", "--oneline", "main"]).split(separator: "\n").count == 3)
        #expect(try git(["--git-dir", repo.path, "symbolic-ref", "HEAD"]) == "refs/heads/main\n")
        let refs = try git(["--git-dir", repo.path, "for-each-ref", "--format=%(refname) %(objectname)"])
        #expect(refs == "refs/heads/main \(mainTip)\nrefs/heads/topic \(topicTip)\nrefs/tags/v1 \(tag)\n")
        #expect(try repo.reference(main) == mainTip)

        // Applied again (a crash before the applied index was recorded): the same bytes.
        let before = try Data(contentsOf: URL(fileURLWithPath: repo.path + "/refs/heads/main"))
        try repo.create(defaultBranch: main)
        _ = try repo.attachPack(pack: stem + ".pack", index: stem + ".idx")
        try repo.setReference(main, to: mainTip)
        #expect(try Data(contentsOf: URL(fileURLWithPath: repo.path + "/refs/heads/main")) == before)

        // A packed ref is deleted by rewriting packed-refs; a stale lock is cleaned.
        try git(["--git-dir", repo.path, "pack-refs", "--all"])
        #expect(!FileManager.default.fileExists(atPath: repo.path + "/refs/heads/topic"))
        #expect(try repo.reference(try RefName("refs/heads/topic")) == topicTip)
        try repo.deleteReference(try RefName("refs/heads/topic"))
        try repo.deleteReference(try RefName("refs/heads/topic"))  // again: nothing changes
        #expect(try repo.reference(try RefName("refs/heads/topic")) == nil)
        let after = try git(["--git-dir", repo.path, "for-each-ref", "--format=%(refname)"])
        #expect(after == "refs/heads/main\nrefs/tags/v1\n")
        FileManager.default.createFile(atPath: repo.path + "/refs/heads/main.lock", contents: Data("x".utf8))
        #expect(try repo.removeStaleLocks() == 1)
        try git(["--git-dir", repo.path, "fsck", "--full", "--strict"])
        // git clone from it works.
        try git(["clone", "-q", repo.path, dir.file("clone")])
        #expect(try git(["rev-parse", "HEAD"], in: dir.file("clone")).hasPrefix(mainTip.hex))
    }
}

@Suite("Partition: state machine checkpoints")
struct PartitionStateMachineTests {
    @Test("Partition: checkpoints read the system's dirty data, and skip syncfs above the limit")
    func dirtyData() throws {
        // On Linux /proc/meminfo has both lines; the value is whatever the system holds.
        let dirty = try #require(TouchedPaths.systemDirtyBytes())
        #expect(dirty < 1 << 50)
        // A round with many paths: targeted fsyncs or one syncfs, durable either way.
        let dir = try TemporaryDirectory("raftd-touched")
        defer { dir.remove() }
        let touched = TouchedPaths()
        for n in 0..<100 {
            try Data([UInt8(n)]).write(to: URL(fileURLWithPath: dir.file("f\(n)")))
            touched.note(dir.file("f\(n)"))
        }
        try touched.flush(fileSystem: dir.path, syncFileSystemAbove: 64)
    }

    @Test(
        "Partition: checkpoint slots alternate; a torn newest slot falls back to the other, both damaged is refused, the older applied/values files are read"
    )
    func checkpointSlots() throws {
        let dir = try TemporaryDirectory("raftd-checkpoint-slots")
        defer { dir.remove() }
        let root = dir.file("storage")
        let state = dir.file("storage/+raft/partitions/p1")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        func set(_ index: UInt64, _ value: UInt8) throws -> Entry {
            Entry(
                term: 1, index: LogIndex(index),
                payload: .normal(
                    try PartitionEntryCodec.encode(PartitionTransaction([.setValue(key: "k", value: [value])]))))
        }
        let machine = try PartitionStateMachine(storageRoot: root, directory: state)
        for index in 1...3 {
            try machine.apply([try set(UInt64(index), UInt8(index))])
            try machine.checkpoint()
        }
        // Rounds 1 and 3 wrote slot 0, round 2 slot 1.
        let slot0 = state + "/checkpoint.0"
        let slot1 = state + "/checkpoint.1"
        #expect(CheckpointRecord(decoding: Array(try Data(contentsOf: URL(fileURLWithPath: slot0))))?.applied == 3)
        #expect(CheckpointRecord(decoding: Array(try Data(contentsOf: URL(fileURLWithPath: slot1))))?.applied == 2)
        // A torn write of the newest slot (any byte flipped): the other slot's checkpoint.
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: slot0)))
        for offset in bytes.indices {
            bytes[offset] ^= 0x40
            #expect(CheckpointRecord(decoding: bytes) == nil, "byte \(offset)")
            bytes[offset] ^= 0x40
        }
        bytes[bytes.count - 1] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: slot0))
        let fallback = try PartitionStateMachine(storageRoot: root, directory: state)
        #expect(fallback.appliedIndex == 2 && fallback.value("k") == [2])
        // Its next round writes slot 0 again (the one without the newest whole record).
        try fallback.apply([try set(3, 3)])
        try fallback.checkpoint()
        #expect(try PartitionStateMachine(storageRoot: root, directory: state).appliedIndex == 3)
        // Both slots damaged: refused, naming the files, not re-applied from nothing.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: slot0))
        try Data([4, 5, 6]).write(to: URL(fileURLWithPath: slot1))
        #expect {
            _ = try PartitionStateMachine(storageRoot: root, directory: state)
        } throws: { "\($0)".contains("checkpoint.0, checkpoint.1") }
        // The layout before slots: `applied` and `values`.
        try FileManager.default.removeItem(atPath: slot0)
        try FileManager.default.removeItem(atPath: slot1)
        try Data("7\n".utf8).write(to: URL(fileURLWithPath: state + "/applied"))
        try Data(PartitionStateMachine.encodeValues(["k": [7]])).write(to: URL(fileURLWithPath: state + "/values"))
        let older = try PartitionStateMachine(storageRoot: root, directory: state)
        #expect(older.appliedIndex == 7 && older.value("k") == [7])
        // Its first durable slot record removes them: they can never win later.
        try older.apply([try set(8, 8)])
        try older.checkpoint()
        #expect(!FileManager.default.fileExists(atPath: state + "/applied"))
        #expect(!FileManager.default.fileExists(atPath: state + "/values"))
        let upgraded = try PartitionStateMachine(storageRoot: root, directory: state)
        #expect(upgraded.appliedIndex == 8 && upgraded.value("k") == [8])
    }

    @Test("Partition: entries applied after the last checkpoint are applied again on reopen, to the same bytes")
    func reapplyAfterReopen() throws {
        let dir = try TemporaryDirectory("raftd-partition-sm")
        defer { dir.remove() }
        let root = dir.file("storage")
        let state = dir.file("storage/+raft/partitions/p2")
        let repo = try RelativePath("a.git")
        let main = try RefName("refs/heads/main")
        let a = try ObjectID(hex: String(repeating: "a", count: 40))
        let b = try ObjectID(hex: String(repeating: "b", count: 40))
        let entries = [
            Entry(
                term: 1, index: 1,
                payload: .normal(
                    try PartitionEntryCodec.encode(
                        PartitionTransaction([
                            .createRepository(repo, defaultBranch: main),
                            .updateReferences(repo, [ReferenceUpdate(name: main, old: .zero, new: a)]),
                        ])))),
            Entry(term: 1, index: 2, payload: .normal([])),
            Entry(
                term: 1, index: 3,
                payload: .normal(
                    try PartitionEntryCodec.encode(
                        PartitionTransaction([
                            .updateReferences(repo, [ReferenceUpdate(name: main, old: a, new: b)]),
                            .setValue(key: "k", value: [1]),
                        ])))),
        ]
        func snapshot() throws -> [String] {
            try ["HEAD", "config", "refs/heads/main"].map {
                try String(contentsOfFile: root + "/a.git/" + $0, encoding: .utf8)
            }
        }
        // No checkpoint is due within an hour: a "crash" loses the applied index.
        let first = try PartitionStateMachine(
            storageRoot: root, directory: state, checkpointIntervalMilliseconds: 3_600_000)
        try first.apply(entries)
        #expect(first.appliedIndex == LogIndex(3) && first.checkpointedIndex == .zero)
        let after = try snapshot()
        let reopened = try PartitionStateMachine(storageRoot: root, directory: state)
        #expect(reopened.appliedIndex == .zero, "nothing was checkpointed")
        try reopened.apply(entries)
        #expect(try snapshot() == after, "re-applied to other bytes")
        #expect(reopened.value("k") == [1])
        try reopened.checkpoint()
        let third = try PartitionStateMachine(storageRoot: root, directory: state)
        #expect(third.appliedIndex == LogIndex(3) && third.value("k") == [1])
        #expect(try RepositoryFiles(path: root + "/a.git").reference(main) == b)
    }

    @Test(
        "Partition: a large reference transaction goes into packed-refs as git pack-refs leaves it; git reads, peels and updates it"
    )
    func packedReferenceUpdates() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let dir = try TemporaryDirectory("raftd-packed")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 30)
        try git(["tag", "-a", "-m", "annotated", "release", "v1"], in: source.path)
        try git(["tag", "-a", "-m", "another", "old-release", "topic"], in: source.path)
        try git(["pack-refs", "--all"], in: source.path)
        let repo = RepositoryFiles(path: source.path + "/.git")
        let v1 = try source.oid("v1")
        let main = try source.oid("main")
        // 20 new branches, main moved, one annotated tag re-pointed at a commit, topic deleted.
        var setting: [(RefName, ObjectID)] = try (0..<20).map { (try RefName("refs/heads/many/b\($0)"), v1) }
        setting.append((try RefName("refs/heads/main"), v1))
        setting.append((try RefName("refs/tags/old-release"), main))
        try repo.updateReferences(deleting: [try RefName("refs/heads/topic")], setting: setting)
        #expect(!FileManager.default.fileExists(atPath: source.path + "/.git/refs/heads/many/b0"), "packed, not loose")
        try git(["fsck", "--full", "--strict"], in: source.path)
        let listed = try git(["for-each-ref", "--format=%(refname) %(objectname) %(*objectname)"], in: source.path)
        #expect(listed.contains("refs/heads/many/b19 \(v1.hex) \n"))
        #expect(listed.contains("refs/heads/main \(v1.hex) \n"))
        #expect(listed.contains("refs/tags/old-release \(main.hex) \n"), "a commit now: nothing to peel")
        #expect(!listed.contains("refs/heads/topic "))
        // The annotated tag that was not touched still peels to its commit.
        #expect(try git(["rev-parse", "release^{commit}"], in: source.path).hasPrefix(v1.hex))
        #expect(try repo.references()[try RefName("refs/heads/many/b7")] == v1)
        // git still updates this repository.
        try git(["update-ref", "refs/heads/many/b3", main.hex], in: source.path)
        try git(["pack-refs", "--all"], in: source.path)
        #expect(try repo.reference(try RefName("refs/heads/many/b3")) == main)
        // A deleted refs/heads/d/e leaves refs/heads/d/; setting refs/heads/d removes it.
        try repo.updateReferences(deleting: [], setting: [(try RefName("refs/heads/d/e"), main)])
        try repo.updateReferences(deleting: [try RefName("refs/heads/d/e")], setting: [])
        try repo.updateReferences(deleting: [], setting: [(try RefName("refs/heads/d"), main)])
        #expect(try git(["rev-parse", "refs/heads/d"], in: source.path).hasPrefix(main.hex))
        // main replaced by main/x in one transaction (deletions first).
        try repo.updateReferences(
            deleting: [try RefName("refs/heads/main")], setting: [(try RefName("refs/heads/main/x"), v1)])
        try git(["fsck", "--full", "--strict"], in: source.path)
        // Small transactions stay loose.
        try repo.updateReferences(deleting: [], setting: [(try RefName("refs/heads/small"), main)])
        #expect(FileManager.default.fileExists(atPath: source.path + "/.git/refs/heads/small"))
    }

    @Test(
        "Partition: packed-refs merge: sorted output, peeled lines kept for untouched tags, unsorted input sorted, lookups"
    )
    func packedRefsMerge() throws {
        let a = String(repeating: "a", count: 40)
        let b = String(repeating: "b", count: 40)
        let c = String(repeating: "c", count: 40)
        let file =
            "# pack-refs with: peeled fully-peeled sorted \n\(a) refs/heads/m\n\(b) refs/tags/t1\n^\(c)\n\(a) refs/tags/t2\n^\(c)\n"
        let packed = PackedRefs(Array(file.utf8))
        #expect(packed.value(try RefName("refs/tags/t1")) == (try ObjectID(hex: b)))
        #expect(packed.value(try RefName("refs/heads/zz")) == nil)
        let out = packed.rewritten(
            setting: [
                (try RefName("refs/heads/a"), try ObjectID(hex: c)),
                (try RefName("refs/tags/t2"), try ObjectID(hex: b)),
            ],
            removing: [try RefName("refs/heads/m"), try RefName("refs/heads/none")])
        #expect(
            String(decoding: out ?? [], as: UTF8.self)
                == "# pack-refs with: sorted \n\(c) refs/heads/a\n\(b) refs/tags/t1\n^\(c)\n\(b) refs/tags/t2\n")
        // Removing what is not there changes nothing; removing only keeps the peeled traits.
        #expect(packed.rewritten(setting: [], removing: [try RefName("refs/heads/none")]) == nil)
        #expect(
            String(
                decoding: packed.rewritten(setting: [], removing: [try RefName("refs/tags/t1")]) ?? [], as: UTF8.self)
                == "# pack-refs with: peeled fully-peeled sorted \n\(a) refs/heads/m\n\(a) refs/tags/t2\n^\(c)\n")
        // A file without the sorted trait (an old git) is read in any order.
        let unsorted = PackedRefs(Array("\(b) refs/heads/z\n\(a) refs/heads/a\n".utf8))
        #expect(unsorted.value(try RefName("refs/heads/a")) == (try ObjectID(hex: a)))
        #expect(unsorted.all.map(\.0.rawValue) == ["refs/heads/a", "refs/heads/z"])
        // No header claims nothing about peeling, also after a deletion; a duplicate name
        // (a damaged file) goes with the name it repeats.
        let bare = PackedRefs(Array("\(a) refs/heads/d\n\(b) refs/heads/d\n\(c) refs/tags/t\n^\(a)\n".utf8))
        #expect(
            String(decoding: bare.rewritten(setting: [], removing: [try RefName("refs/heads/d")]) ?? [], as: UTF8.self)
                == "# pack-refs with: sorted \n\(c) refs/tags/t\n^\(a)\n")
    }

    @Test(
        "Partition: opening a replica removes the lock files a crash left in its registered repositories, and registers and unregisters by apply"
    )
    func staleLocksAtOpen() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let metadata = try fixture.open()
        let key = try fixture.key("default:7")
        try metadata.registerPartition(key, mode: .raft)
        let repo = try RelativePath("@hashed/77/77/r.git")
        let other = try RelativePath("@hashed/77/77/other.git")
        let directory = fixture.root + "/+raft/partitions/p7"
        do {
            let machine = try PartitionStateMachine(
                storageRoot: fixture.root, directory: directory, partition: key, registry: metadata)
            let main = try RefName("refs/heads/main")
            try machine.apply([
                Entry(
                    term: 1, index: 1,
                    payload: .normal(
                        try PartitionEntryCodec.encode(
                            PartitionTransaction([
                                .createRepository(repo, defaultBranch: main),
                                .createRepository(other, defaultBranch: main),
                            ])))),
                Entry(
                    term: 1, index: 2,
                    payload: .normal(try PartitionEntryCodec.encode(PartitionTransaction([.removeRepository(other)])))),
            ])
            try machine.checkpoint()
        }
        #expect(try metadata.partitionKey(for: repo) == key)
        #expect(try metadata.partitionKey(for: other) == nil, "removal unregisters")
        // A crash left lock files behind.
        let locks = ["HEAD.lock", "refs/heads/main.lock", "refs/heads/feature/x.lock", "packed-refs.lock"]
        try FileManager.default.createDirectory(
            atPath: fixture.root + "/" + repo.rawValue + "/refs/heads/feature", withIntermediateDirectories: true)
        for lock in locks {
            FileManager.default.createFile(atPath: fixture.root + "/" + repo.rawValue + "/" + lock, contents: Data())
        }
        let reopened = try PartitionStateMachine(
            storageRoot: fixture.root, directory: directory, partition: key, registry: metadata)
        #expect(reopened.appliedIndex == LogIndex(2))
        for lock in locks {
            #expect(!FileManager.default.fileExists(atPath: fixture.root + "/" + repo.rawValue + "/" + lock))
        }
    }
}

import Foundation
import Testing

@testable import RaftEngine

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Partition: verification on the leader")
struct PartitionVerificationTests {
    let hasGit = FileManager.default.isExecutableFile(atPath: "/usr/bin/git")

    /// Every object of a repository, as git lists them.
    func allObjects(_ gitDirectory: String) throws -> [ObjectID] {
        try git(["--git-dir", gitDirectory, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"])
            .split(separator: "\n").map { try ObjectID(hex: String($0)) }
    }

    /// `oid` with its last byte changed: almost surely not an object of a small repository.
    func absent(_ oid: ObjectID) throws -> ObjectID {
        var bytes = oid.bytes
        bytes[19] ^= 0x5A
        bytes[0] ^= 0x01
        return try ObjectID(bytes: bytes)
    }

    @Test("Partition: the object database finds every object git lists, loose, packed and through alternates")
    func objectDatabase() throws {
        try #require(hasGit, "the test command installs git")
        let dir = try TemporaryDirectory("raftd-odb")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 30)
        try git(["gc", "-q"], in: source.path)
        for n in 1...3 { try source.commit("loose \(n)") }
        let objects = try allObjects(source.path + "/.git")
        #expect(objects.count > 90)
        let database = try ObjectDatabase(repository: source.path + "/.git")
        for oid in objects { #expect(try database.contains(oid), "\(oid.hex)") }
        let known = Set(objects)
        for oid in objects.prefix(50) {
            let other = try absent(oid)
            if !known.contains(other) { #expect(try !database.contains(other)) }
        }
        // A repository that borrows everything from the first one.
        let borrower = RepositoryFiles(path: dir.file("borrower.git"))
        try borrower.create(defaultBranch: try RefName("refs/heads/main"))
        try borrower.setAlternates(pool: source.path + "/.git")
        let borrowing = try ObjectDatabase(repository: borrower.path)
        #expect(try objects.allSatisfy { try borrowing.contains($0) })
        #expect(try ObjectDatabase(repository: dir.file("missing.git")).contains(objects[0]) == false)
    }

    @Test(
        "Partition: a pushed pack is indexed by git in a quarantine; thin packs are completed; damage and missing history are refused"
    )
    func packValidation() throws {
        try #require(hasGit, "the test command installs git")
        let dir = try TemporaryDirectory("raftd-pack")
        defer { dir.remove() }
        let source = try SourceRepository(at: dir.file("work"), commits: 40)
        let validator = PackValidator()
        let full = try source.pack(["main", "topic", "v1"])
        let main = try source.oid("main")

        // A complete pack for a repository that does not exist yet.
        let validated = try validator.validate(
            pack: full, repository: nil, pool: nil, tips: [main], quarantine: dir.file("q1"))
        let expected = Set(
            try git(["rev-list", "--objects", "main", "topic", "v1"], in: source.path).split(separator: "\n")
                .map { try ObjectID(hex: String($0.prefix(40))) })
        #expect(Set(validated.objects) == expected)
        #expect(!FileManager.default.fileExists(atPath: dir.file("q1")), "the quarantine is removed")

        // Attach it to a repository, then validate a thin pack of two new commits against it.
        let target = RepositoryFiles(path: dir.file("target.git"))
        try target.create(defaultBranch: try RefName("refs/heads/main"))
        try "".write(toFile: dir.file("p.pack"), atomically: true, encoding: .utf8)
        try Data(validated.pack).write(to: URL(fileURLWithPath: dir.file("p.pack")))
        try Data(validated.index).write(to: URL(fileURLWithPath: dir.file("p.idx")))
        try target.attachPack(pack: dir.file("p.pack"), index: dir.file("p.idx"))
        try target.setReference(try RefName("refs/heads/main"), to: main)
        try source.commit("thin 1")
        let newMain = try source.commit("thin 2")
        let thin = try source.pack(["main", "^\(main.hex)"], thin: true)
        let completed = try validator.validate(
            pack: thin, repository: target.path, pool: nil, tips: [newMain], quarantine: dir.file("q2"))
        #expect(completed.objects.contains(newMain))

        // The same new commits for a repository that lacks their history.
        #expect(throws: PartitionError.self) {
            try validator.validate(pack: thin, repository: nil, pool: nil, tips: [newMain], quarantine: dir.file("q3"))
        }
        // Without their history: `index-pack --strict` finds the broken links itself.
        let historyless = try source.pack(["main", "^\(main.hex)"])
        #expect(throws: PartitionError.self) {
            try validator.validate(
                pack: historyless, repository: nil, pool: nil, tips: [newMain], quarantine: dir.file("q4"))
        }
        // A complete pack, but a tip that is in neither the pack nor the repository.
        let older = try source.pack(["v1"])
        do {
            _ = try validator.validate(
                pack: older, repository: nil, pool: nil, tips: [newMain], quarantine: dir.file("q7"))
            Issue.record("a tip outside the pack and the repository was accepted")
        } catch {
            guard case .objectMissing = error else {
                Issue.record("expected objectMissing, got \(error)")
                return
            }
        }
        // Damage: a flipped byte in the middle, a truncated pack, not a pack at all.
        var flipped = full
        flipped[full.count / 2] ^= 0xFF
        var truncated = full
        truncated.removeLast(100)
        for bad in [flipped, truncated, Array("PACK but not really, and long enough to look at".utf8)] {
            do {
                _ = try validator.validate(
                    pack: bad, repository: nil, pool: nil, tips: [main], quarantine: dir.file("q5"))
                Issue.record("a damaged pack was accepted")
            } catch {
                guard case .invalidPack = error else {
                    Issue.record("expected invalidPack, got \(error)")
                    return
                }
            }
        }
        #expect(throws: PartitionError.self) {
            try PackValidator(maximumPackBytes: 100).validate(
                pack: full, repository: nil, pool: nil, tips: [], quarantine: dir.file("q6"))
        }
    }

    @Test(
        "Partition: verification: expected old values, existence, objects, pools and symlinks, against applied and pending state"
    )
    func verifier() throws {
        try #require(hasGit, "the test command installs git")
        let dir = try TemporaryDirectory("raftd-verify")
        defer { dir.remove() }
        let root = dir.file("storage")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let source = try SourceRepository(at: dir.file("work"), commits: 12)
        let main = try RefName("refs/heads/main")
        let x = try source.oid("v1")
        let y = try source.oid("main")
        let repo = try RelativePath("@hashed/aa/bb/repo.git")
        // The applied state: the repository with all objects, main at x.
        let files = RepositoryFiles(path: root + "/" + repo.rawValue)
        try files.create(defaultBranch: main)
        try files.setAlternates(pool: source.path + "/.git")
        try files.setReference(main, to: x)
        let verifier = PartitionVerifier(storageRoot: root)

        func refusal(_ ops: [PartitionOperation], pending: [PartitionEffects] = []) -> PartitionError? {
            do {
                _ = try verifier.verify(PartitionTransaction(ops), pending: pending)
                return nil
            } catch { return error }
        }
        #expect(
            refusal([.updateReferences(repo, [ReferenceUpdate(name: main, old: .zero, new: y)])])
                == .referenceStateMismatch(
                    repository: repo.rawValue, reference: main.rawValue, expected: .zero, actual: x))
        let moved = try verifier.verify(
            PartitionTransaction([.updateReferences(repo, [ReferenceUpdate(name: main, old: x, new: y)])]),
            pending: [])
        // A second transaction expecting x conflicts with the first, proposed but not applied.
        #expect(
            refusal([.updateReferences(repo, [ReferenceUpdate(name: main, old: x, new: x)])], pending: [moved])
                == .referenceStateMismatch(
                    repository: repo.rawValue, reference: main.rawValue, expected: x, actual: y))
        #expect(
            refusal([.updateReferences(repo, [ReferenceUpdate(name: main, old: y, new: x)])], pending: [moved]) == nil)
        // Deletion, then the same ref created within one transaction.
        #expect(
            refusal([
                .updateReferences(repo, [ReferenceUpdate(name: main, old: x, new: .zero)]),
                .updateReferences(repo, [ReferenceUpdate(name: main, old: .zero, new: y)]),
            ]) == nil)
        #expect(
            refusal([.updateReferences(repo, [ReferenceUpdate(name: main, old: x, new: try absent(y))])])
                == .objectMissing(repository: repo.rawValue, object: try absent(y).hex))
        if case .invalidOperation = refusal([
            .updateReferences(
                repo, [ReferenceUpdate(name: main, old: x, new: y), ReferenceUpdate(name: main, old: x, new: y)])
        ]) {
        } else {
            Issue.record("a reference updated twice in one transaction was accepted")
        }
        // Names that would be a file and a directory at once (git refuses them too).
        for conflicting in ["refs/heads/main/x", "refs/heads/main/x/y"] {
            guard
                case .invalidRefName = refusal([
                    .updateReferences(repo, [ReferenceUpdate(name: try RefName(conflicting), old: .zero, new: x)])
                ])
            else {
                Issue.record("\(conflicting) was accepted beside refs/heads/main")
                continue
            }
        }
        let nested = try verifier.verify(
            PartitionTransaction([
                .updateReferences(repo, [ReferenceUpdate(name: try RefName("refs/heads/topic/x"), old: .zero, new: x)])
            ]), pending: [])
        guard
            case .invalidRefName = refusal(
                [.updateReferences(repo, [ReferenceUpdate(name: try RefName("refs/heads/topic"), old: .zero, new: x)])],
                pending: [nested])
        else {
            Issue.record("refs/heads/topic was accepted above a pending refs/heads/topic/x")
            return
        }
        // Deleting main and creating main/x in one transaction is what git allows.
        #expect(
            refusal([
                .updateReferences(
                    repo,
                    [
                        ReferenceUpdate(name: main, old: x, new: .zero),
                        ReferenceUpdate(name: try RefName("refs/heads/main/x"), old: .zero, new: x),
                    ])
            ]) == nil)
        // Existence, counting pending creations and removals.
        let other = try RelativePath("@hashed/cc/dd/other.git")
        #expect(refusal([.createRepository(repo, defaultBranch: main)]) == .repositoryExists(repo.rawValue))
        #expect(refusal([.setHead(other, target: main)]) == .repositoryNotFound(other.rawValue))
        let created = try verifier.verify(
            PartitionTransaction([.createRepository(other, defaultBranch: main)]), pending: [])
        #expect(
            refusal([.createRepository(other, defaultBranch: main)], pending: [created])
                == .repositoryExists(other.rawValue))
        let removed = try verifier.verify(PartitionTransaction([.removeRepository(repo)]), pending: [])
        #expect(
            refusal([.updateReferences(repo, [ReferenceUpdate(name: main, old: x, new: y)])], pending: [removed])
                == .repositoryNotFound(repo.rawValue))
        // Pools.
        let pool = try RelativePath("@pools/ab/cd/pool.git")
        let poolCreated = try verifier.verify(PartitionTransaction([.createObjectPool(pool)]), pending: [])
        #expect(refusal([.linkToPool(repository: repo, pool: pool)], pending: [poolCreated]) == nil)
        for bad: [PartitionOperation] in [
            [.createRepository(try RelativePath("@pools/x/y.git"), defaultBranch: main)],
            [.createObjectPool(try RelativePath("@hashed/not/a/pool.git"))],
            [.linkToPool(repository: repo, pool: repo)],
            [.linkToPool(repository: repo, pool: other)],
        ] {
            guard case .objectPoolRule = refusal(bad, pending: [created]) else {
                Issue.record("\(bad) was not refused by a pool rule")
                continue
            }
        }
        #expect(refusal([.linkToPool(repository: pool, pool: pool)], pending: [poolCreated]) != nil)
        // A directory in the way, and a symbolic link out of the storage root.
        try FileManager.default.createDirectory(
            atPath: root + "/@hashed/ee/junk.git", withIntermediateDirectories: true)
        guard
            case .repositoryExists = refusal([
                .createRepository(try RelativePath("@hashed/ee/junk.git"), defaultBranch: main)
            ])
        else {
            Issue.record("a directory in the way was not refused")
            return
        }
        try FileManager.default.createDirectory(atPath: dir.file("outside"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: dir.file("outside"))
        guard
            case .invalidOperation(let reason) = refusal([
                .createRepository(try RelativePath("escape/repo.git"), defaultBranch: main)
            ])
        else {
            Issue.record("a symbolic link out of the storage root was followed")
            return
        }
        #expect(reason.contains("symbolic link"))
    }

    @Test("Subprocess: exit codes, a deadline, bounded output, input a child never reads")
    func subprocess() throws {
        let shell = Subprocess(executable: "/bin/sh", environment: ["PATH": "/usr/bin:/bin"])
        #expect(try shell.run(["-c", "exit 3"]).exitCode == 3)
        let echoed = try Subprocess(executable: "/bin/cat", environment: [:]).run(
            [], input: Array(repeating: 7, count: 1 << 20))
        #expect(echoed.succeeded && echoed.standardOutput == Array(repeating: 7, count: 1 << 20))
        // A child that exits without reading: our write gets EPIPE, not a fatal SIGPIPE.
        #expect(
            try Subprocess(executable: "/bin/true", environment: [:]).run(
                [], input: Array(repeating: 1, count: 4 << 20)
            ).succeeded)
        var sleeper = Subprocess(executable: "/bin/sleep", environment: [:])
        sleeper.timeoutMilliseconds = 200
        let slept = try sleeper.run(["10"])
        #expect(slept.timedOut && slept.signal == SIGKILL && !slept.succeeded)
        var chatty = Subprocess(executable: "/usr/bin/yes", environment: [:])
        chatty.maximumOutputBytes = 1_000
        chatty.timeoutMilliseconds = 300
        let said = try chatty.run([])
        #expect(said.standardOutput.count == 1_000 && said.outputTruncated)
        #expect(throws: IOError.self) { try Subprocess(executable: "/nonexistent/program", environment: [:]).run([]) }
        let failed = try shell.run(["-c", "echo oops >&2; exit 1"])
        #expect(failed.errorText == "oops")
    }
}

import Foundation
import RaftTesting
import Testing

@testable import RaftEngine

@Suite("Partition: kill -9 inside apply")
struct PartitionCrashTests {
    /// Kill points tried (all of them when there are fewer); `RAFTD_PARTITION_KILL_POINTS` raises it.
    static let maximumPoints = Int(ProcessInfo.processInfo.environment["RAFTD_PARTITION_KILL_POINTS"] ?? "") ?? 400

    /// Every file and directory under `root`: relative path → contents (nil: a directory).
    /// Every file and directory under `root` with its bytes; a partition directory's
    /// checkpoint slots count by what they mean (the newest record's applied index and
    /// values), not by which slot holds it or how many rounds wrote it.
    func tree(_ root: String) throws -> [String: Data?] {
        var out: [String: Data?] = [:]
        guard let walk = FileManager.default.enumerator(atPath: root) else { return out }
        var checkpointed: Set<String> = []
        while let relative = walk.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            if name.hasPrefix("checkpoint.") {
                checkpointed.insert((relative as NSString).deletingLastPathComponent)
                continue
            }
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory)
            out[relative] =
                isDirectory.boolValue
                ? .some(nil) : .some(try Data(contentsOf: URL(fileURLWithPath: root + "/" + relative)))
        }
        for directory in checkpointed {
            let slots = (0..<CheckpointRecord.slots).map {
                FileManager.default.contents(atPath: root + "/" + directory + "/" + CheckpointRecord.slotName($0))
                    .map(Array.init)
            }
            let newest = try CheckpointRecord.newest(slots, in: directory)
            out[directory + "/checkpoint (newest)"] = .some(
                newest.map { Data(Array("\($0.0.applied.rawValue)\n".utf8) + $0.0.values) })
        }
        return out
    }

    /// Runs the child applying `script`; returns (exit code or nil when killed by a signal,
    /// its output).
    func runChild(_ child: String, _ root: String, _ script: String, kill: Int) throws -> (Int32?, String) {
        try Self.run(child, [root, root + "/+raft/partitions/p2", script, "\(kill)"])
    }

    /// Runs the child with `arguments`; returns (exit code or nil when killed by a signal,
    /// its output).
    static func run(_ child: String, _ arguments: [String]) throws -> (Int32?, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: child)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationReason == .exit ? process.terminationStatus : nil, text)
    }

    /// Eleven transactions over two repositories and a pool: packs, reference updates and
    /// deletions, HEAD, pool links and unlinks, a removal and re-creation, values.
    func script(_ dir: TemporaryDirectory) throws -> [UInt8] {
        let source = try SourceRepository(at: dir.file("work"), commits: 60)
        let validator = PackValidator()
        var quarantines = 0
        func pack(_ revisions: [String]) throws -> PackReference {
            quarantines += 1
            let v = try validator.validate(
                pack: try source.pack(revisions), repository: source.path + "/.git", pool: nil, tips: [],
                quarantine: dir.file("q\(quarantines)"))
            return .inline(pack: v.pack, index: v.index)
        }
        let a = try RelativePath("@hashed/aa/aa/a.git")
        let b = try RelativePath("@hashed/bb/bb/b.git")
        let pool = try RelativePath("@pools/cc/cc/pool.git")
        let main = try RefName("refs/heads/main")
        let topic = try RefName("refs/heads/topic")
        let v1 = try source.oid("v1")
        let firstMain = try source.oid("main")
        let firstTopic = try source.oid("topic")
        let full = try pack(["main", "topic", "v1"])
        for n in 1...4 { try source.commit("more \(n)") }
        let secondMain = try source.oid("main")
        let second = try pack(["main", "^\(firstMain.hex)"])
        let transactions: [[PartitionOperation]] = [
            [
                .createRepository(a, defaultBranch: main), .attachPack(a, full),
                .updateReferences(
                    a,
                    [
                        ReferenceUpdate(name: main, old: .zero, new: firstMain),
                        ReferenceUpdate(name: topic, old: .zero, new: firstTopic),
                        ReferenceUpdate(name: try RefName("refs/tags/v1"), old: .zero, new: v1),
                    ]),
                .setValue(key: "owner", value: Array("a".utf8)),
            ],
            [.createObjectPool(pool), .attachPack(pool, full)],
            [
                .createRepository(b, defaultBranch: main), .linkToPool(repository: b, pool: pool),
                .updateReferences(b, [ReferenceUpdate(name: main, old: .zero, new: v1)]),
            ],
            [
                .attachPack(a, second),
                .updateReferences(
                    a,
                    [
                        ReferenceUpdate(name: main, old: firstMain, new: secondMain),
                        ReferenceUpdate(name: topic, old: firstTopic, new: .zero),
                    ]),
            ],
            [
                .updateReferences(a, [ReferenceUpdate(name: try RefName("refs/heads/feature/x"), old: .zero, new: v1)]),
                .setHead(a, target: try RefName("refs/heads/feature/x")),
                // Re-applied after the removal below ran, this meets a missing repository.
                .attachPack(a, full),
            ],
            [.unlinkFromPool(b), .attachPack(b, full)],
            // More updates than go loose: one packed-refs rewrite.
            [
                .updateReferences(
                    b,
                    try (0..<20).map {
                        ReferenceUpdate(name: try RefName("refs/heads/many/b\($0)"), old: .zero, new: v1)
                    })
            ],
            [.removeRepository(a)],
            [
                .createRepository(a, defaultBranch: main), .attachPack(a, full),
                .updateReferences(a, [ReferenceUpdate(name: main, old: .zero, new: firstMain)]),
            ],
            [.deleteValue(key: "owner"), .setValue(key: "state", value: Array("done".utf8))],
            [
                .updateReferences(
                    b,
                    [ReferenceUpdate(name: main, old: v1, new: .zero)]
                        + (0..<17).map {
                            ReferenceUpdate(name: try! RefName("refs/heads/many/b\($0)"), old: v1, new: .zero)
                        }
                        + (17..<20).map {
                            ReferenceUpdate(name: try! RefName("refs/heads/many/b\($0)"), old: v1, new: firstMain)
                        })
            ],
        ]
        var bytes: [UInt8] = []
        func u32(_ v: Int) {
            bytes += [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
        }
        u32(transactions.count)
        for ops in transactions {
            let entry = try PartitionEntryCodec.encode(PartitionTransaction(ops))
            u32(entry.count)
            bytes += entry
        }
        return bytes
    }

    @Test(
        "Partition: SIGKILL at every file operation of apply and checkpoint; re-applied from the checkpoint, the files are byte-identical to an uncrashed run"
    )
    func killInsideApply() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/git"), "the test command installs git")
        let child = builtProduct("PartitionCrashChild")
        try #require(
            FileManager.default.isExecutableFile(atPath: child),
            "build PartitionCrashChild first (swift build --build-tests)")
        let dir = try TemporaryDirectory("raftd-apply-crash")
        defer { dir.remove() }
        let scriptPath = dir.file("script")
        try Data(try script(dir)).write(to: URL(fileURLWithPath: scriptPath))

        // Off the cooperative pool: this runs a child process hundreds of times.
        let problems = try await onDedicatedThread("raftd-apply-crash") { () throws -> [String] in
            let reference = dir.file("reference")
            let (status, output) = try runChild(child, reference, scriptPath, kill: -1)
            guard status == 0, output.hasPrefix("points ") else { return ["uncrashed run failed: \(output)"] }
            let points = Int(output.dropFirst("points ".count).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            let expected = try tree(reference)
            for repository in ["@hashed/aa/aa/a.git", "@hashed/bb/bb/b.git", "@pools/cc/cc/pool.git"] {
                try git(["--git-dir", reference + "/" + repository, "fsck", "--full", "--strict"])
            }
            var problems: [String] = []
            let stride = max(1, points / Self.maximumPoints)
            var tried = 0
            for point in Swift.stride(from: 0, to: points, by: stride) {
                let root = dir.file("crash\(point)")
                let (killed, killedOutput) = try runChild(child, root, scriptPath, kill: point)
                if killed != nil {
                    problems.append("kill point \(point): the child was not killed (\(killedOutput))")
                    continue
                }
                let (again, againOutput) = try runChild(child, root, scriptPath, kill: -1)
                guard again == 0 else {
                    problems.append("kill point \(point): re-apply failed: \(againOutput)")
                    continue
                }
                let found = try tree(root)
                if found != expected {
                    let differing =
                        Set(found.keys).symmetricDifference(expected.keys).sorted()
                        + found.keys.filter { expected[$0] != nil && expected[$0]! != found[$0]! }.sorted()
                    problems.append("kill point \(point): differs from the uncrashed run at \(differing.prefix(5))")
                }
                try? FileManager.default.removeItem(atPath: root)
                tried += 1
            }
            print("partition apply crash test: \(tried) of \(points) kill points, \(problems.count) problems")
            return problems
        }
        #expect(problems.isEmpty, "\(problems.prefix(10))")
    }

    @Test(
        "Partition: SIGKILL at every step of writing an attachment (stored by a leader, received from a peer): after recovery it is there whole or absent, never partial, and writing it again gives the same bytes"
    )
    func killInsideAttachmentWrite() async throws {
        let child = builtProduct("PartitionCrashChild")
        try #require(
            FileManager.default.isExecutableFile(atPath: child),
            "build PartitionCrashChild first (swift build --build-tests)")
        let dir = try TemporaryDirectory("raftd-attach-crash")
        defer { dir.remove() }
        // 5 MiB and an "index" of 100 KB: two writeback steps, several receive pieces (no
        // larger: the test fsyncs it at every kill point, beside the other suites).
        var rng = SplitMix64(seed: 23)
        let pack = (0..<(5 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let index = (0..<100_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try Data(pack).write(to: URL(fileURLWithPath: dir.file("pack")))
        try Data(index).write(to: URL(fileURLWithPath: dir.file("index")))
        let id = try AttachmentStore.id(pack: pack, index: index)

        @Sendable func run(_ root: String, kill: Int) throws -> (Int32?, String) {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            return try Self.run(child, ["attach", root, dir.file("pack"), dir.file("index"), "\(kill)"])
        }

        let problems = try await onDedicatedThread("raftd-attach-crash") { () throws -> [String] in
            let (status, output) = try run(dir.file("reference"), kill: -1)
            guard status == 0, output.hasPrefix("points ") else { return ["uncrashed run failed: \(output)"] }
            let points = Int(output.dropFirst("points ".count).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            var problems: [String] = []
            if points < 10 { problems.append("only \(points) kill points") }
            for point in 0..<points {
                let root = dir.file("crash\(point)")
                let (killed, killedOutput) = try run(root, kill: point)
                if killed != nil {
                    problems.append("kill point \(point): the child was not killed (\(killedOutput))")
                    continue
                }
                for part in ["put", "received"] {
                    let store = AttachmentStore(directory: root + "/" + part)
                    try store.recover()
                    let left = (try? FileManager.default.contentsOfDirectory(atPath: store.directory)) ?? []
                    if left.contains(where: { $0.hasSuffix(".tmp") }) {
                        problems.append("kill point \(point): \(part) kept temporary files \(left)")
                    }
                    // Whole (the index counts it present) or absent, never a partial pack under its name.
                    if store.contains(id) {
                        let paths = store.paths(id)
                        let bytes = try paths.map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
                        if bytes != [pack, index] { problems.append("kill point \(point): \(part) holds other bytes") }
                    }
                }
                let (again, againOutput) = try run(root, kill: -1)
                if again != 0 { problems.append("kill point \(point): writing again failed: \(againOutput)") }
                for part in ["put", "received"] {
                    let store = AttachmentStore(directory: root + "/" + part)
                    let bytes = try store.paths(id).map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
                    if bytes != [pack, index] {
                        problems.append("kill point \(point): \(part) differs after writing again")
                    }
                }
                try? FileManager.default.removeItem(atPath: root)
            }
            print("attachment crash test: \(points) kill points, \(problems.count) problems")
            return problems
        }
        #expect(problems.isEmpty, "\(problems.prefix(10))")
    }
}

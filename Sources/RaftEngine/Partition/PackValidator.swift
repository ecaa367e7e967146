/// A pack indexed and checked on the leader, ready to go into the log.
public struct ValidatedPack: Sendable {
    /// The pack as git completed it (`--fix-thin` appends the bases a thin pack left out).
    public var pack: [UInt8]
    /// Its version 2 index, written by git.
    public var index: [UInt8]
    /// The object names the index holds.
    public var objects: [ObjectID]
}

/// Validates an incoming pack the way git's receive-pack does, in a quarantine directory:
/// `git index-pack --stdin --fix-thin --strict` (every object parses, fsck rules hold, a
/// thin pack's bases exist in the repository), then `git rev-list --objects --quiet
/// <new tips> --not --all` (everything the new tips reach is in the
/// repository, its pool or the pack). Nothing reaches the repository: the quarantine is
/// removed afterwards. This is the only place a `git` process runs, and it is not on the
/// apply path (followers apply the validated pack and index as they are).
public struct PackValidator: Sendable {
    public var git: String
    /// Packs larger than this are refused before git sees them.
    public var maximumPackBytes: Int
    public var timeoutMilliseconds: Int

    public init(git: String = "/usr/bin/git", maximumPackBytes: Int = 1 << 30, timeoutMilliseconds: Int = 300_000) {
        self.git = git
        self.maximumPackBytes = maximumPackBytes
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// Validates `pack` for the repository at `repository` (nil: it does not exist yet;
    /// the pack must then be complete) borrowing from `pool` (the pool's repository
    /// directory, if linked). `tips`: the objects the transaction's references will point
    /// at. `quarantine`: a directory path that does not exist yet (created and removed).
    public func validate(
        pack: [UInt8], repository: String?, pool: String?, tips: [ObjectID], quarantine: String
    ) throws(PartitionError) -> ValidatedPack {
        guard pack.count <= maximumPackBytes else {
            throw .invalidPack("\(pack.count) bytes is over the limit of \(maximumPackBytes)")
        }
        guard pack.count >= 32, pack.prefix(4).elementsEqual(Array("PACK".utf8)) else {
            throw .invalidPack("not a git pack (no PACK signature)")
        }
        // git splits its alternates variable at ':' (and alternates files at newlines): a
        // path with either could name another repository's objects.
        for path in [repository, pool, quarantine].compactMap({ $0 })
        where path.utf8.contains(where: { $0 == UInt8(ascii: ":") || $0 < 0x20 }) {
            throw .invalidPack(
                "the repository path \(path) has a ':' or a control character; git cannot name it safely")
        }
        let objectsDirectory = quarantine + "/objects"
        try storage { () throws(IOError) in
            // A minimal bare repository: git needs one when the target does not exist yet.
            try RepositoryFiles(path: quarantine).create(defaultBranch: try! RefName("refs/heads/main"))
        }
        defer { try? FileSystem.removeTree(quarantine) }
        var alternates: [String] = []
        if let repository { alternates.append(repository + "/objects") }
        if let pool { alternates.append(pool + "/objects") }
        var environment = [
            "GIT_DIR": repository ?? quarantine,
            "GIT_OBJECT_DIRECTORY": objectsDirectory,
            // No user or system configuration, no prompts, no hooks, no pager.
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
            "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "PATH": "/usr/bin:/bin", "LC_ALL": "C",
            // The quarantine is scratch, removed within seconds: git need not flush it (it
            // fsyncs packs by default). What is kept is made durable by raftd itself (the
            // log entry, or the attachment), so a large push is written to disk once.
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.fsync", "GIT_CONFIG_VALUE_0": "none",
        ]
        if !alternates.isEmpty { environment["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = alternates.joined(separator: ":") }
        var runner = Subprocess(executable: git, environment: environment)
        runner.timeoutMilliseconds = timeoutMilliseconds
        // index-pack prints one line and rev-list --quiet nothing: no large buffers.
        runner.maximumOutputBytes = 4_096

        let indexed = try run(runner, ["index-pack", "--stdin", "--fix-thin", "--strict"], input: pack)
        guard indexed.succeeded else {
            throw .invalidPack("git index-pack refused it: \(indexed.errorText)")
        }
        // "pack\t<checksum>" (or "keep\t..."): the files git wrote in the quarantine.
        let line = String(decoding: indexed.standardOutput, as: UTF8.self)
        guard let name = line.split(whereSeparator: { $0 == "\t" || $0 == "\n" }).dropFirst().first,
            name.count == 40
        else {
            throw .invalidPack("git index-pack printed \"\(line.prefix(100))\", not a pack name")
        }
        let stem = objectsDirectory + "/pack/pack-" + name
        let packBytes = try storage { () throws(IOError) in try FileSystem.readFileIfExists(stem + ".pack") }
        let indexBytes = try storage { () throws(IOError) in try FileSystem.readFileIfExists(stem + ".idx") }
        guard let packBytes, let indexBytes else { throw .invalidPack("git index-pack wrote no pack-\(name)") }
        let objects = try PackIndex(indexBytes, path: stem + ".idx").names

        if !tips.isEmpty {
            // Everything the new tips reach, minus what the repository's references already
            // reach, must be present: rev-list fails naming the first missing object.
            var arguments = ["rev-list", "--objects", "--quiet"] + tips.map(\.hex)
            if repository != nil { arguments += ["--not", "--all"] }
            let listed = try run(runner, arguments, input: [])
            guard listed.succeeded else {
                throw .objectMissing(
                    repository: repository ?? quarantine,
                    object: "reachable from \(tips.map(\.hex).joined(separator: ", ")) (\(listed.errorText))")
            }
        }
        return ValidatedPack(pack: packBytes, index: indexBytes, objects: objects)
    }

    private func run(
        _ runner: Subprocess, _ arguments: [String], input: [UInt8]
    ) throws(PartitionError)
        -> Subprocess.Outcome
    {
        do { return try runner.run(arguments, input: input) } catch {
            throw .invalidPack("could not run \(git): \(error)")
        }
    }
}

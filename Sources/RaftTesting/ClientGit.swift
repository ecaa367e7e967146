import Foundation
import RaftEngine

/// What a git command did.
public struct GitOutcome: Sendable {
    public var status: Int32
    public var output: String
    public var errors: String
    public var ok: Bool { status == 0 }
}

public struct ClientGitError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `/usr/bin/git` as a client runs it (the demo's push and clone, the benchmark's commits,
/// the daemon tests), through the engine's `Subprocess`: no user or system configuration,
/// no prompts, a fixed identity, killed after `timeout` seconds.
public enum ClientGit {
    public static let path = "/usr/bin/git"
    /// Standard output kept (the commands run here print little; packs go to files). More
    /// is an error, not a silent truncation.
    static let maximumOutputBytes = 4 << 20

    @discardableResult
    public static func run(
        _ arguments: [String], in directory: String, timeout: Double = 300, input: Data? = nil,
        environment extra: [String: String] = [:]
    ) throws -> GitOutcome {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ClientGitError("\(path) is missing: install Debian's git (apt-get install git)")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_CONFIG_NOSYSTEM"] = "1"
        environment["GIT_CONFIG_GLOBAL"] = "/dev/null"
        environment["GIT_TERMINAL_PROMPT"] = "0"
        environment["GIT_AUTHOR_NAME"] = "raftd demo"
        environment["GIT_AUTHOR_EMAIL"] = "demo@raftd.invalid"
        environment["GIT_COMMITTER_NAME"] = "raftd demo"
        environment["GIT_COMMITTER_EMAIL"] = "demo@raftd.invalid"
        environment.merge(extra) { $1 }
        var git = Subprocess(executable: path, environment: environment)
        git.timeoutMilliseconds = Int(timeout * 1000)
        git.maximumOutputBytes = maximumOutputBytes
        let outcome = try git.run(arguments, in: directory, input: input.map { Array($0) } ?? [])
        if outcome.timedOut {
            throw ClientGitError("git \(arguments.joined(separator: " ")) still ran after \(Int(timeout)) s")
        }
        if outcome.outputTruncated {
            throw ClientGitError("git \(arguments.first ?? "") wrote more than \(maximumOutputBytes) bytes")
        }
        return GitOutcome(
            status: outcome.exitCode ?? 128 + (outcome.signal ?? 0),
            output: String(decoding: outcome.standardOutput, as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines),
            errors: String(decoding: outcome.standardError, as: UTF8.self))
    }

    /// Runs git and fails with its standard error unless it exits 0; its standard output.
    @discardableResult
    public static func check(
        _ arguments: [String], in directory: String, timeout: Double = 300, environment: [String: String] = [:]
    ) throws -> String {
        let outcome = try run(arguments, in: directory, timeout: timeout, environment: environment)
        guard outcome.ok else {
            throw ClientGitError(
                "git \(arguments.first ?? "") failed (\(outcome.status)): \(outcome.errors.suffix(600))")
        }
        return outcome.output
    }
}

/// A chain of commits and one pack holding all of them, built with git in `directory`: the
/// load's first write to a repository brings the pack, later ones move references among
/// the commits. The commits are the same on every run (fixed dates and identity), so that
/// a benchmark run again finds its commits already there.
public struct CommitChain: Sendable {
    public let commits: [String]
    public let pack: Data

    public init(length: Int, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try ClientGit.check(["init", "-q", "-b", "main", "."], in: directory)
        let fixedDate = ["GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"]
        var commits: [String] = []
        for n in 0..<length {
            try ClientGit.check(
                ["commit", "-q", "--allow-empty", "-m", "load commit \(n)"], in: directory, environment: fixedDate)
            commits.append(try ClientGit.check(["rev-parse", "HEAD"], in: directory))
        }
        // The pack, through a file: its bytes are binary.
        let packBase = directory + "/chain"
        let objects = try ClientGit.check(["rev-list", "--objects", "HEAD"], in: directory)
        let made = try ClientGit.run(
            ["pack-objects", "-q", packBase], in: directory, input: Data((objects + "\n").utf8))
        guard made.ok else { throw ClientGitError("git pack-objects failed: \(made.errors)") }
        let name = made.output.split(separator: "\n").last.map(String.init) ?? ""
        let packPath = "\(packBase)-\(name).pack"
        guard let bytes = FileManager.default.contents(atPath: packPath) else {
            throw ClientGitError("git pack-objects wrote no \(packPath)")
        }
        self.commits = commits
        pack = bytes
    }
}

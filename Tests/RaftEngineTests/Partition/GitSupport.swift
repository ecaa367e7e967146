import Foundation
import RaftEngine

/// Runs Debian's git; returns its standard output; throws with its standard error.
@discardableResult
func git(_ arguments: [String], in directory: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    process.arguments = (directory.map { ["-C", $0] } ?? []) + arguments
    process.environment = [
        "GIT_AUTHOR_NAME": "raftd", "GIT_AUTHOR_EMAIL": "raftd@example.invalid", "GIT_COMMITTER_NAME": "raftd",
        "GIT_COMMITTER_EMAIL": "raftd@example.invalid", "HOME": NSTemporaryDirectory(),
    ]
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw PartitionTestFailure(
            "git \(arguments.joined(separator: " ")): \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: data, as: UTF8.self)
}

struct PartitionTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs git with `input` on its standard input; returns its standard output as bytes.
func gitBytes(_ arguments: [String], in directory: String? = nil, input: Data = Data()) throws -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    process.arguments = (directory.map { ["-C", $0] } ?? []) + arguments
    process.environment = ["HOME": NSTemporaryDirectory(), "GIT_CONFIG_NOSYSTEM": "1"]
    let stdin = Pipe()
    let out = Pipe()
    process.standardInput = stdin
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    // Feed the input on another thread: git may fill its output pipe before reading it all.
    let writer = Thread {
        stdin.fileHandleForWriting.write(input)
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw PartitionTestFailure("git \(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
    }
    return data
}

/// A working repository made by git, the source of pushes in the partition tests.
struct SourceRepository {
    let path: String

    /// `commits` commits on main (every tenth a merge of a side branch), tag v1 at the
    /// middle, and a branch topic.
    init(at path: String, commits: Int) throws {
        self.path = path
        try git(["init", "-q", "-b", "main", path])
        for n in 1...commits {
            if n % 10 == 0 {
                try git(["checkout", "-q", "-b", "side\(n)"], in: path)
                try "side \(n)\n".write(toFile: path + "/side.txt", atomically: true, encoding: .utf8)
                try git(["add", "."], in: path)
                try git(["commit", "-q", "-m", "side \(n)"], in: path)
                try git(["checkout", "-q", "main"], in: path)
                try git(["merge", "-q", "--no-ff", "-m", "merge \(n)", "side\(n)"], in: path)
            } else {
                try "line \(n)\n".write(toFile: path + "/f\(n % 7).txt", atomically: true, encoding: .utf8)
                try git(["add", "."], in: path)
                try git(["commit", "-q", "-m", "commit \(n)"], in: path)
            }
            if n == commits / 2 { try git(["tag", "v1"], in: path) }
        }
        try git(["branch", "topic", "HEAD~1"], in: path)
    }

    func oid(_ revision: String) throws -> ObjectID {
        try ObjectID(hex: try git(["rev-parse", revision], in: path).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Commits one more change on the checked-out branch; returns the new commit.
    @discardableResult
    func commit(_ message: String) throws -> ObjectID {
        try "\(message)\n".write(toFile: path + "/more.txt", atomically: true, encoding: .utf8)
        try git(["add", "."], in: path)
        try git(["commit", "-q", "-m", message], in: path)
        return try oid("HEAD")
    }

    /// A pack of the objects reachable from `revisions` (git's `rev-list` syntax: `^x`
    /// excludes); `thin`: deltas may refer to excluded objects (what `git push` sends).
    func pack(_ revisions: [String], thin: Bool = false) throws -> [UInt8] {
        Array(
            try gitBytes(
                ["pack-objects", "--revs", "--stdout", "-q"] + (thin ? ["--thin"] : []), in: path,
                input: Data((revisions.joined(separator: "\n") + "\n").utf8)))
    }
}

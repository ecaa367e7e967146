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
    /// middle, and a branch topic at main's parent. Built by one `git fast-import` (a
    /// process per commit held a test thread for tens of seconds on a loaded machine).
    init(at path: String, commits: Int) throws {
        self.path = path
        try git(["init", "-q", "-b", "main", path])
        var stream = ""
        var mark = 0
        var time = 1_700_000_000
        func data(_ text: String) -> String { "data \(text.utf8.count)\n\(text)\n" }
        func commit(_ ref: String, _ message: String, file: String, content: String, from: Int?, merge: Int?) -> Int {
            mark += 1
            let blob = mark
            stream += "blob\nmark :\(blob)\n" + data(content)
            mark += 1
            time += 60
            stream += "commit \(ref)\nmark :\(mark)\n"
            stream += "author raftd <raftd@example.invalid> \(time) +0000\n"
            stream += "committer raftd <raftd@example.invalid> \(time) +0000\n" + data(message)
            if let from { stream += "from :\(from)\n" }
            if let merge { stream += "merge :\(merge)\n" }
            stream += "M 100644 :\(blob) \(file)\n\n"
            return mark
        }
        var head: Int?
        var parent: Int?
        var v1: Int?
        for n in 1...commits {
            let previous = head
            if n % 10 == 0, let base = head {
                let side = commit(
                    "refs/heads/side\(n)", "side \(n)", file: "side.txt", content: "side \(n)\n", from: base, merge: nil
                )
                head = commit(
                    "refs/heads/main", "merge \(n)", file: "merged\(n).txt", content: "merged \(n)\n", from: base,
                    merge: side)
            } else {
                head = commit(
                    "refs/heads/main", "commit \(n)", file: "f\(n % 7).txt", content: "line \(n)\n", from: head,
                    merge: nil)
            }
            parent = previous
            if n == commits / 2 { v1 = head }
        }
        stream += "reset refs/tags/v1\nfrom :\(v1 ?? head!)\n\n"
        stream += "reset refs/heads/topic\nfrom :\(parent ?? head!)\n\n"
        try gitBytes(["fast-import", "--quiet"], in: path, input: Data(stream.utf8))
        try git(["checkout", "-q", "-f", "main"], in: path)
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

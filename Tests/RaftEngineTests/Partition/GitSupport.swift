import Foundation

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

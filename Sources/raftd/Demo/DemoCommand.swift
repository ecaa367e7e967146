import ArgumentParser
import Foundation

/// `raftd demo`: the README's main command. By default three `raftd serve` processes on
/// 127.0.0.1 (ProcessDemo); `--in-process` keeps the engine-only demo of earlier issues.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract:
            "Run a local 3-node cluster (three raftd serve processes) through writes, a git push and clone, quiescing, kill -9 of a leader and its restart, and check it.",
        discussion: """
            Exits non-zero if any acknowledged write is missing on any replica, the clone fails \
            git fsck, or a node does not come back; the directory and node logs are then kept. \
            Needs raftd-git-hook next to raftd (swift build --product raftd-git-hook).
            """
    )

    @Option(
        name: [.customLong("partitions"), .customLong("groups")],
        help: "Partitions (Raft groups), each with a replica on every node.")
    var partitions: Int = 1_000

    @Option(help: "Seconds of the write workload (then about 5 s more through the failover and restart).")
    var seconds: Double = 8

    @Option(help: "Concurrent writers.")
    var writers: Int = 64

    @Option(
        help:
            "Directory for the cluster (new or empty; default: a fresh one under the system temporary directory, removed at the end if every check held)."
    )
    var dir: String?

    @Flag(help: "Keep the directory (configs, data, node logs) even when every check held.")
    var keep = false

    @Flag(help: "The engine alone: three node hosts in this process on an in-memory transport.")
    var inProcess = false

    @Option(help: "Output format: text or json (the summary; the story goes to standard error).")
    var format: OutputFormat = .text

    func validate() throws {
        guard (1...100_000).contains(partitions) else { throw ValidationError("--partitions must be 1...100000") }
        guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be in (0, 3600]") }
        guard (1...4096).contains(writers) else { throw ValidationError("--writers must be 1...4096") }
    }

    func run() async throws {
        if inProcess {
            try await InProcessDemo(groups: partitions, seconds: seconds, writers: writers, dir: dir, format: format)
                .run()
        } else {
            try await ProcessDemo(
                partitions: partitions, seconds: seconds, writers: writers, directory: dir, keep: keep, format: format
            ).run()
        }
    }
}

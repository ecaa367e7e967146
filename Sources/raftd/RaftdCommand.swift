import ArgumentParser

/// `raftd`: the daemon and its operator subcommands.
@main
struct RaftdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raftd",
        abstract: "A multi-Raft replication engine for storage nodes hosting thousands of Git repository partitions.",
        discussion: """
            Subcommands that exist today: demo (a 3-node cluster in one process), io-probe, wal verify, \
            wal dump, simulate. serve and the cluster/partition admin commands arrive with the daemon \
            issue; see docs/ROADMAP.md in the repository.
            """,
        subcommands: [DemoCommand.self, IOProbeCommand.self, WALCommand.self, SimulateCommand.self]
    )
}

/// Output formats shared by the operator subcommands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

import ArgumentParser

/// `raftd`: the daemon and its operator subcommands.
@main
struct RaftdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raftd",
        abstract: "A multi-Raft replication engine for storage nodes hosting thousands of Git repository partitions.",
        discussion: """
            Subcommands that exist today: io-probe, wal verify, wal dump, simulate. The cluster (serve, demo, \
            cluster/partition admin) arrives with the node host and daemon issues; \
            see docs/ROADMAP.md in the repository.
            """,
        subcommands: [IOProbeCommand.self, WALCommand.self, SimulateCommand.self]
    )
}

/// Output formats shared by the operator subcommands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

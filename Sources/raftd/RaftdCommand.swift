import ArgumentParser

/// `raftd`: the daemon and its operator subcommands.
@main
struct RaftdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raftd",
        abstract: "A multi-Raft replication engine for storage nodes hosting thousands of Git repository partitions.",
        discussion: """
            Start a local cluster with `raftd init --dir D`, then `raftd serve --config D/node<k>.toml` per \
            node; repo, ref, cluster and partition talk to it over gRPC. demo runs a 3-node cluster in \
            one process; io-probe, wal verify, wal dump and simulate are the engine's tools.
            """,
        subcommands: [
            InitCommand.self, ServeCommand.self, RepoCommand.self, RefCommand.self, ClusterCommand.self,
            PartitionCommand.self, BenchCommand.self, DemoCommand.self, IOProbeCommand.self, WALCommand.self,
            StorageCommand.self, SimulateCommand.self,
        ]
    )
}

/// Output formats shared by the operator subcommands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

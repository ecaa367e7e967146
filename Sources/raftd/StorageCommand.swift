import ArgumentParser
import Foundation
import RaftEngine

/// `raftd storage rejoin`: a storage that left the cluster and comes back gets a new
/// incarnation (docs/MEMBERSHIP.md).
struct StorageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage", abstract: "A storage's identity (offline: its node must be stopped).",
        subcommands: [Rejoin.self])

    struct Rejoin: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Give a storage that left the cluster a new incarnation: at the node's next start, the replicas it held under the old one are not trusted and their data is deleted; the partitions' leaders add new replicas (raftd partition replace-replica)."
        )
        @Option(name: .long, help: "The node's configuration file.") var config: String
        @Option(name: .long, help: "The storage's name.") var storage: String
        @Option(name: .long, help: "Output format: text or json.") var format: OutputFormat = .text

        func run() throws {
            let configuration: NodeConfiguration
            do { configuration = try NodeConfiguration(file: config) } catch {
                throw ValidationError("\(error)")
            }
            guard let entry = configuration.storages.first(where: { $0.name.description == storage }) else {
                throw ValidationError(
                    "storage \(storage) is not in \(config) (it has: \(configuration.storages.map(\.name.description).joined(separator: ", ")))"
                )
            }
            let store: MetadataStore
            do {
                store = try MetadataStore.open(
                    storageRoot: entry.path, clusterID: configuration.clusterID, storageName: entry.name,
                    nodeID: configuration.nodeID, createIfMissing: false)
            } catch {
                throw ValidationError(
                    "opening storage \(storage) at \(entry.path): \(error) (stop its node first: one process per storage)"
                )
            }
            defer { store.close() }
            let old = store.identity.incarnation
            let new: StorageIncarnation
            do { new = try store.bumpIncarnation() } catch {
                throw ValidationError("recording the new incarnation of \(storage): \(error)")
            }
            switch format {
            case .text:
                print(
                    "storage \(storage): incarnation \(old) -> \(new); replicas recorded for \(old) are deleted at the node's next start"
                )
            case .json:
                print(
                    "{\"storage\":\"\(storage)\",\"old_incarnation\":\(old.rawValue),\"incarnation\":\(new.rawValue)}")
            }
        }
    }
}

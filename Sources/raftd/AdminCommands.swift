import ArgumentParser
import Foundation
import RaftAPI
import RaftClient
import SwiftProtobuf

/// Options every API subcommand shares.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "Comma-separated host:port gRPC endpoints of the cluster's nodes (one is enough).")
    var endpoints: String

    @Option(name: .long, help: "The client token file (`raftd init` writes DIR/token).")
    var tokenFile: String

    @Option(
        name: .long,
        help: "TLS: the CA certificate that signed the nodes' certificates (`raftd init --tls` writes DIR/tls/ca.pem).")
    var tlsCaFile: String?

    @Option(name: .long, help: "Output format: text or json.")
    var format: OutputFormat = .text

    func client(deadline: Duration = .seconds(15)) throws -> RaftClient {
        guard let data = FileManager.default.contents(atPath: tokenFile) else {
            throw ValidationError("--token-file \(tokenFile) cannot be read")
        }
        let list = endpoints.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        return try RaftClient(
            endpoints: list, token: String(decoding: data, as: UTF8.self), deadline: deadline,
            tls: tlsCaFile.map(RaftClient.TLS.init))
    }

    /// Prints a response: JSON (protobuf's JSON mapping) or the text `describe` gives.
    func emit<M: SwiftProtobuf.Message>(_ message: M, _ describe: (M) -> String) throws {
        switch format {
        case .json:
            var options = JSONEncodingOptions()
            options.alwaysPrintInt64sAsNumbers = true
            options.preserveProtoFieldNames = true
            print(try message.jsonString(options: options))
        case .text:
            print(describe(message))
        }
    }
}

/// Runs an API subcommand: a failed call prints its typed error and exits 1.
func runClient(
    _ options: ClientOptions, deadline: Duration = .seconds(15), _ body: (RaftClient) async throws -> Void
) async throws {
    let client = try options.client(deadline: deadline)
    defer { client.close() }
    do {
        try await body(client)
    } catch let error as RaftClientError {
        let refusal = error.refusal.isEmpty ? "" : " [\(error.refusal)]"
        FileHandle.standardError.write(Data("raftd: \(error)\(refusal)\n".utf8))
        throw ExitCode(1)
    }
}

struct RepoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repo", abstract: "Create, remove and list repositories.",
        subcommands: [Create.self, Remove.self, List.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a repository in a new partition (or a pool's).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The repository's relative path, e.g. group/project.git.") var path: String
        @Option(name: .long, help: "Default branch.") var defaultBranch = "refs/heads/main"
        @Option(name: .long, help: "Object pool to create it in and link it to.") var objectPool = ""

        func run() async throws {
            try await runClient(options) { client in
                let response = try await client.createRepository(
                    path, defaultBranch: defaultBranch, objectPool: objectPool)
                try options.emit(response) { "created \(path) in partition \($0.partitionKey) at LSN \($0.lsn)" }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a repository.")
        @OptionGroup var options: ClientOptions
        @Argument var path: String

        func run() async throws {
            try await runClient(options) { client in
                var response = Raftd_V1_RemoveRepositoryResponse()
                response.lsn = try await client.removeRepository(path)
                try options.emit(response) { "removed \(path) at LSN \($0.lsn)" }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List repositories (of one storage, or all).")
        @OptionGroup var options: ClientOptions
        @Option(name: .long, help: "Only this storage.") var storage = ""

        func run() async throws {
            try await runClient(options) { client in
                var response = Raftd_V1_ListRepositoriesResponse()
                response.repositories = try await client.listRepositories(storage: storage)
                try options.emit(response) { response in
                    response.repositories.map { "\($0.relativePath)\t\($0.partitionKey)" }.joined(separator: "\n")
                }
            }
        }
    }
}

struct RefCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ref", abstract: "Update (compare-and-set) and list references.",
        subcommands: [Update.self, List.self])

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Compare-and-set references atomically: each --set is ref=old:new (40 hex digits each; zeros: none).")
        @OptionGroup var options: ClientOptions
        @Argument var path: String
        @Option(name: .long, parsing: .singleValue, help: "ref=old:new") var set: [String] = []
        @Option(name: .long, help: "A pack file (git pack-objects output, up to 1 MiB) with the objects.") var pack:
            String?
        @Option(name: .long, parsing: .singleValue, help: "A key-value pair key=value to set with it.") var value:
            [String] = []

        func run() async throws {
            var request = Raftd_V1_UpdateReferencesRequest()
            request.repository.relativePath = path
            for item in set {
                guard let equals = item.firstIndex(of: "="), let colon = item.lastIndex(of: ":"), equals < colon else {
                    throw ValidationError("--set \(item): write ref=old:new")
                }
                var update = Raftd_V1_ReferenceUpdate()
                update.reference = String(item[..<equals])
                update.oldOid = String(item[item.index(after: equals)..<colon])
                update.newOid = String(item[item.index(after: colon)...])
                request.updates.append(update)
            }
            for item in value {
                guard let equals = item.firstIndex(of: "=") else {
                    throw ValidationError("--value \(item): write key=value")
                }
                var pair = Raftd_V1_KeyValue()
                pair.key = String(item[..<equals])
                pair.value = Data(item[item.index(after: equals)...].utf8)
                request.setValues.append(pair)
            }
            if let pack {
                guard let data = FileManager.default.contents(atPath: pack) else {
                    throw ValidationError("--pack \(pack) cannot be read")
                }
                request.pack = data
            }
            try await runClient(options) { client in
                var response = Raftd_V1_UpdateReferencesResponse()
                response.lsn = try await client.updateReferences(request)
                try options.emit(response) { "updated at LSN \($0.lsn)" }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a repository's references.")
        @OptionGroup var options: ClientOptions
        @Argument var path: String
        @Option(name: .long, help: "linearizable, lease or stale") var consistency = "linearizable"
        @Option(name: .long, help: "With --consistency stale: wait until the replica applied this LSN.") var minLsn:
            UInt64 = 0
        @Option(name: .long, help: "Only references with this prefix.") var prefix = ""

        func run() async throws {
            var request = Raftd_V1_ListRefsRequest()
            request.repository.relativePath = path
            request.minLsn = minLsn
            request.prefix = prefix
            switch consistency {
            case "linearizable": request.consistency = .linearizable
            case "lease": request.consistency = .lease
            case "stale": request.consistency = .staleAtLsn
            default: throw ValidationError("--consistency \(consistency): use linearizable, lease or stale")
            }
            try await runClient(options) { client in
                let response = try await client.listRefs(request)
                try options.emit(response) { response in
                    (["# at LSN \(response.lsn)"] + response.references.map { "\($0.oid) \($0.name)" })
                        .joined(separator: "\n")
                }
            }
        }
    }
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "The cluster's nodes and storages; the replication factor.",
        subcommands: [Info.self, SetReplicationFactor.self])

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Nodes, storages, and replicas and leaders per storage of every reachable node.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await runClient(options) { client in
                var merged = try await client.clusterInfo()
                // Each node counts its own storages: ask every node that answers.
                for node in merged.nodes {
                    guard let info = try? await client.clusterInfo(at: node.clientAddress) else { continue }
                    for storage in info.storages where storage.nodeID == node.nodeID {
                        if let i = merged.storages.firstIndex(where: { $0.name == storage.name }) {
                            merged.storages[i] = storage
                        }
                    }
                }
                try options.emit(merged) { info in
                    var lines = ["cluster \(info.clusterID)", "NODE\tID\tCLIENT\tSTORAGES\tREACHABLE"]
                    for node in info.nodes {
                        lines.append(
                            "\(node.name)\t\(node.nodeID)\t\(node.clientAddress)\t\(node.storages.joined(separator: ","))\t\(node.reachable)"
                        )
                    }
                    lines.append("STORAGE\tNODE\tREPLICAS\tLEADERS")
                    for storage in info.storages {
                        lines.append("\(storage.name)\t\(storage.nodeID)\t\(storage.replicas)\t\(storage.leaders)")
                    }
                    return lines.joined(separator: "\n")
                }
            }
        }
    }
}

struct PartitionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partition", abstract: "Inspect partitions and change their membership.",
        subcommands: [
            Show.self, Route.self, AddReplica.self, Promote.self, RemoveReplica.self, ReplaceReplica.self,
            TransferLeader.self, Rebalance.self,
        ])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A partition's leader, term, LSNs and replicas (by key or by a repository's path).")
        @OptionGroup var options: ClientOptions
        @OptionGroup var selector: PartitionSelector

        func run() async throws {
            try await runClient(options) { client in
                var response = try await client.partition(
                    key: selector.partitionKey, relativePath: selector.relativePath)
                // The leader knows each replica's match index: ask it when it is elsewhere.
                if !response.leaderAddress.isEmpty,
                    let fromLeader = try? await client.partition(
                        key: response.partitionKey, at: response.leaderAddress)
                {
                    response = fromLeader
                }
                try options.emit(response) { p in
                    var lines = [
                        "partition \(p.partitionKey) (\(p.mode)) leader member \(p.leaderMember.isEmpty ? "none" : p.leaderMember) at \(p.leaderAddress)",
                        "term \(p.term) commit \(p.commitLsn) applied \(p.appliedLsn)"
                            + (p.leaderForMs >= 0 ? " leader for \(p.leaderForMs) ms" : ""),
                        "MEMBER\tROLE\tSTORAGE\tNODE\tMATCH\tLAG\tHEALTHY\tLAST CONTACT",
                    ]
                    for r in p.replicas {
                        let contact = r.lastContactMs >= 0 ? "\(r.lastContactMs) ms" : "unknown"
                        lines.append(
                            "\(r.memberID)\t\(r.role)\t\(r.storage)\t\(r.nodeID)\t\(r.matchLsn)\t\(r.lag)\t\(r.healthy)\t\(contact)"
                        )
                    }
                    if !p.repositories.isEmpty {
                        lines.append("repositories: \(p.repositories.joined(separator: ", "))")
                    }
                    return lines.joined(separator: "\n")
                }
            }
        }
    }
}

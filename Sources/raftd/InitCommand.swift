import ArgumentParser
import Foundation
import RaftEngine

/// `raftd init`: writes a ready local cluster (configs, secret, token, data directories).
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract:
            "Write the configuration of a local cluster: one TOML file per node, a shared secret and a client token.",
        discussion: """
            Node k listens on 127.0.0.1, ports P+10(k-1) (peer), +1 (gRPC), +2 (HTTP) and +3 (Git HTTP), with one \
            storage under DIR/data/node<k>. Secret and token files are created with mode 0600. It prints \
            the commands that start the nodes. It refuses a directory that already holds a cluster.
            """)

    @Option(name: .long, help: "Number of nodes (1 to 9).")
    var nodes = 3

    @Option(name: .long, help: "Directory to write into (created if missing).")
    var dir: String

    @Option(name: .long, help: "First port (node k uses P+10(k-1) .. P+10(k-1)+3).")
    var basePort = 17100

    @Option(name: .long, help: "Raft tick in milliseconds.")
    var tickMs = 10

    @Option(name: .long, help: "Election timeout in ticks (the heartbeat is a tenth of it).")
    var electionTicks = 50

    @Flag(
        name: .long,
        help:
            "TLS on the gRPC and peer ports: writes a CA and a certificate per node under DIR/tls (clients pass --tls-ca-file DIR/tls/ca.pem)."
    )
    var tls = false

    @Option(name: .long, help: "Output format: text or json.")
    var format: OutputFormat = .text

    func validate() throws {
        guard (2...10_000).contains(electionTicks) else { throw ValidationError("--election-ticks: use 2 to 10000") }
        guard (1...9).contains(nodes) else { throw ValidationError("--nodes \(nodes): use 1 to 9") }
        guard (1024...65_000).contains(basePort) else {
            throw ValidationError("--base-port \(basePort): use 1024 to 65000")
        }
    }

    func run() throws {
        let root = URL(fileURLWithPath: dir).standardizedFileURL.path
        let manager = FileManager.default
        try manager.createDirectory(atPath: root, withIntermediateDirectories: true)
        guard !manager.fileExists(atPath: root + "/node1.toml") else {
            throw ValidationError("\(root) already holds a cluster (node1.toml): choose another --dir or remove it")
        }
        try Self.writeSecret(root + "/secret")
        try Self.writeSecret(root + "/token")
        let certificates = tls ? try ClusterCertificates.write(to: root + "/tls", nodes: nodes) : nil
        let cluster = ClusterID.random()
        let ids = (0..<nodes).map { _ in NodeID.random() }
        func port(_ node: Int, _ offset: Int) -> Int { basePort + 10 * node + offset }
        var files: [String] = []
        for node in 0..<nodes {
            let storagePath = "\(root)/data/node\(node + 1)"
            try manager.createDirectory(atPath: storagePath, withIntermediateDirectories: true)
            // The storage's layout and identity now: `serve` never makes an empty
            // directory a storage by itself (an unmounted disk looks the same).
            let storage = try Storage(
                root: storagePath, clusterID: cluster, name: try StorageName("s\(node + 1)"), nodeID: ids[node],
                createIfMissing: true)
            storage.close()
            var text = """
                # raftd node configuration, written by `raftd init`. See docs/DAEMON.md.
                [node]
                name = "node\(node + 1)"
                id = "\(ids[node])"
                cluster_id = "\(cluster)"

                [listen]
                peer = "127.0.0.1:\(port(node, 0))"
                grpc = "127.0.0.1:\(port(node, 1))"
                http = "127.0.0.1:\(port(node, 2))"
                git = "127.0.0.1:\(port(node, 3))"

                [auth]
                secret_file = "secret"
                token_file = "token"

                [raft]
                tick_ms = \(tickMs)
                election_ticks = \(electionTicks)
                heartbeat_ticks = \(max(1, electionTicks / 10))

                [[storage]]
                name = "s\(node + 1)"
                path = "data/node\(node + 1)"

                """
            if certificates != nil {
                text += """

                    [tls]
                    cert_file = "tls/node\(node + 1).pem"
                    key_file = "tls/node\(node + 1).key"
                    ca_file = "tls/ca.pem"

                    """
            }
            for other in 0..<nodes where other != node {
                text += """

                    [[peer]]
                    name = "node\(other + 1)"
                    id = "\(ids[other])"
                    address = "127.0.0.1:\(port(other, 0))"
                    grpc = "127.0.0.1:\(port(other, 1))"
                    git = "127.0.0.1:\(port(other, 3))"
                    storages = ["s\(other + 1)"]

                    """
            }
            let file = "\(root)/node\(node + 1).toml"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            files.append(file)
        }
        let endpoints = (0..<nodes).map { "127.0.0.1:\(port($0, 1))" }.joined(separator: ",")
        switch format {
        case .json:
            let list = files.map { "\"\($0)\"" }.joined(separator: ",")
            let ca = certificates.map { ",\"tls_ca_file\":\"\($0.ca)\"" } ?? ""
            print(
                "{\"directory\":\"\(root)\",\"cluster_id\":\"\(cluster)\",\"configs\":[\(list)],\"endpoints\":\"\(endpoints)\",\"token_file\":\"\(root)/token\"\(ca)}"
            )
        case .text:
            print("Wrote a \(nodes)-node cluster (cluster ID \(cluster)) to \(root).")
            print("Start each node (in its own terminal, or with & and logs redirected):")
            for file in files { print("  raftd serve --config \(file)") }
            print("Then, for example:")
            let ca = certificates.map { " --tls-ca-file \($0.ca)" } ?? ""
            print("  raftd cluster info --endpoints \(endpoints) --token-file \(root)/token\(ca)")
        }
    }

    /// 32 random bytes as hex, written to a new file of mode 0600.
    static func writeSecret(_ path: String) throws {
        var generator = SystemRandomNumberGenerator()
        let text = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array((text + "\n").utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

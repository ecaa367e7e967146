import Foundation
import RaftEngine
import RaftTransport
import TOMLKit

/// A configuration problem: the field it is in and what to do about it. `raftd serve`
/// prints it and exits non-zero.
struct ConfigurationError: Error, CustomStringConvertible {
    let file: String
    let field: String
    let problem: String

    var description: String { "\(file): \(field): \(problem)" }
}

/// One node's configuration (`raftd serve --config FILE`), as `raftd init` writes it:
///
///     [node]     name, id, cluster_id
///     [listen]   peer, grpc, http, git (host:port; git optional: Git smart HTTP)
///     [auth]     secret_file, token_file (mode 0600; relative to the config's directory)
///     [tls]      cert_file, key_file (mode 0600), ca_file (optional: TLS on the gRPC and
///                peer ports; `raftd init --tls` writes them)
///     [raft]     tick_ms, election_ticks, heartbeat_ticks
///     [[storage]] name, path
///     [git]      max_push_mib, max_requests (optional)
///     [[peer]]   name, id, address (peer port), grpc (client port), git (optional: its
///                Git HTTP address, where pushes are redirected when it leads), storages
struct NodeConfiguration: Sendable {
    struct StorageEntry: Sendable, Equatable {
        var name: StorageName
        var path: String
    }

    struct PeerEntry: Sendable {
        var name: String
        var id: NodeID
        var address: PeerAddress
        var clientAddress: PeerAddress
        var gitAddress: PeerAddress?
        var storages: [StorageName]
    }

    var file: String
    var name: String
    var nodeID: NodeID
    var clusterID: ClusterID
    var peerListen: PeerAddress
    var grpcListen: PeerAddress
    var httpListen: PeerAddress
    /// Git smart HTTP (push and clone); nil: not served.
    var gitListen: PeerAddress?
    /// The largest push body accepted, in bytes (spooled to the storage's disk first).
    var gitMaximumPushBytes: Int
    /// Git requests served at once (each runs a git process); more get 503.
    var gitMaximumRequests: Int
    var secret: [UInt8]
    var token: [UInt8]
    /// TLS on the gRPC and peer ports (all three or none): this node's certificate, its
    /// key (mode 0600) and the CA that signed every node's certificate.
    var tlsCertificateFile: String?
    var tlsKeyFile: String?
    var tlsCAFile: String?
    var peerTLS: PeerTLS?
    var tickMilliseconds: Int
    var electionTicks: Int
    var heartbeatTicks: Int
    var storages: [StorageEntry]
    var peers: [PeerEntry]
    /// [snapshots]: zstd level, what all sends may use, transfers at once each way.
    var snapshotCompressionLevel: Int
    var snapshotBandwidthBytesPerSecond: UInt64
    var snapshotMaximumSending: Int
    var snapshotMaximumReceiving: Int
    /// [log]: entries kept behind the compaction point, and the least one compaction drops.
    var logRetentionEntries: Int
    var logRetentionBytes: UInt64
    var logCompactionStepEntries: Int
    /// [partitions]: replicas a new partition starts with (this node's and the first
    /// peers'); more are added with `raftd cluster set-replication-factor`.
    var initialReplicas: Int

    /// Reads and validates `file`. Every problem names its field and the fix.
    init(file: String) throws(ConfigurationError) {
        self.file = file
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigurationError(
                file: file, field: "(file)", problem: "cannot read it: \(error.localizedDescription)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                file: file, field: "(syntax)", problem: "\(error.description) at \(error.source.begin.debugDescription)"
            )
        } catch {
            throw ConfigurationError(file: file, field: "(syntax)", problem: "\(error)")
        }
        let directory = (file as NSString).deletingLastPathComponent
        let reader = Reader(file: file, directory: directory.isEmpty ? "." : directory)
        try reader.refuseUnknown(
            table, "",
            allowed: [
                "node", "listen", "auth", "tls", "raft", "storage", "peer", "git", "snapshots", "log", "partitions",
            ])

        let node = try reader.table(table, "node")
        try reader.refuseUnknown(node, "node", allowed: ["name", "id", "cluster_id"])
        name = try reader.string(node, "node.name")
        nodeID = try reader.parse(node, "node.id", "a UUID such as 6b0f4a8e-…; `raftd init` writes one") {
            try NodeID(parsing: $0)
        }
        clusterID = try reader.parse(node, "node.cluster_id", "the UUID every node of the cluster shares") {
            try ClusterID(parsing: $0)
        }

        let listen = try reader.table(table, "listen")
        try reader.refuseUnknown(listen, "listen", allowed: ["peer", "grpc", "http", "git"])
        peerListen = try reader.address(listen, "listen.peer")
        grpcListen = try reader.address(listen, "listen.grpc")
        httpListen = try reader.address(listen, "listen.http")
        gitListen = listen["git"] == nil ? nil : try reader.address(listen, "listen.git")
        var ports = [("listen.peer", peerListen), ("listen.grpc", grpcListen), ("listen.http", httpListen)]
        if let gitListen { ports.append(("listen.git", gitListen)) }
        for (i, a) in ports.enumerated() {
            for b in ports[(i + 1)...] where a.1 == b.1 && a.1.port != 0 {
                throw ConfigurationError(
                    file: file, field: b.0, problem: "\(b.1) is also \(a.0): give each listener its own port")
            }
        }

        let auth = try reader.table(table, "auth")
        try reader.refuseUnknown(auth, "auth", allowed: ["secret_file", "token_file"])
        secret = try reader.secretFile(auth, "auth.secret_file", minimumBytes: 16)
        token = try reader.secretFile(auth, "auth.token_file", minimumBytes: 16)

        if let tls = table["tls"] {
            guard let tls = tls.table else {
                throw ConfigurationError(file: file, field: "tls", problem: "must be a table ([tls])")
            }
            try reader.refuseUnknown(tls, "tls", allowed: ["cert_file", "key_file", "ca_file"])
            let cert = try reader.existingFile(tls, "tls.cert_file")
            let key = try reader.privateFile(tls, "tls.key_file")
            let ca = try reader.existingFile(tls, "tls.ca_file")
            let loaded: PeerTLS
            do {
                loaded = try PeerTLS(certificateFile: cert, keyFile: key, caFile: ca)
            } catch {
                throw ConfigurationError(file: file, field: "tls", problem: "\(error)")
            }
            if loaded.notValidAfter <= Int(Date().timeIntervalSince1970) {
                throw ConfigurationError(
                    file: file, field: "tls.cert_file",
                    problem:
                        "\(cert) expired on \(Date(timeIntervalSince1970: Double(loaded.notValidAfter))): peers and clients would refuse it; issue a new one from the cluster's CA"
                )
            }
            peerTLS = loaded
            tlsCertificateFile = cert
            tlsKeyFile = key
            tlsCAFile = ca
        }

        if let raw = table["git"], raw.table == nil {
            throw ConfigurationError(file: file, field: "git", problem: "must be a table ([git])")
        }
        let git = table["git"]?.table ?? TOMLTable()
        try reader.refuseUnknown(git, "git", allowed: ["max_push_mib", "max_requests"])
        gitMaximumPushBytes = try reader.int(git, "git.max_push_mib", default: 8_192, range: 1...1_048_576) << 20
        gitMaximumRequests = try reader.int(git, "git.max_requests", default: 64, range: 1...4_096)

        if let raw = table["snapshots"], raw.table == nil {
            throw ConfigurationError(file: file, field: "snapshots", problem: "must be a table ([snapshots])")
        }
        let snapshots = table["snapshots"]?.table ?? TOMLTable()
        try reader.refuseUnknown(
            snapshots, "snapshots",
            allowed: ["compression_level", "bandwidth_mib_per_second", "max_sending", "max_receiving"])
        snapshotCompressionLevel = try reader.int(snapshots, "snapshots.compression_level", default: 1, range: -7...19)
        snapshotBandwidthBytesPerSecond =
            UInt64(
                try reader.int(snapshots, "snapshots.bandwidth_mib_per_second", default: 1_024, range: 1...1_048_576))
            << 20
        snapshotMaximumSending = try reader.int(snapshots, "snapshots.max_sending", default: 2, range: 1...64)
        snapshotMaximumReceiving = try reader.int(snapshots, "snapshots.max_receiving", default: 2, range: 1...64)

        if let raw = table["log"], raw.table == nil {
            throw ConfigurationError(file: file, field: "log", problem: "must be a table ([log])")
        }
        let log = table["log"]?.table ?? TOMLTable()
        try reader.refuseUnknown(
            log, "log", allowed: ["retention_entries", "retention_mib", "compaction_step_entries"])
        logRetentionEntries = try reader.int(log, "log.retention_entries", default: 4_096, range: 16...100_000_000)
        logRetentionBytes = UInt64(try reader.int(log, "log.retention_mib", default: 64, range: 1...1_048_576)) << 20
        logCompactionStepEntries = try reader.int(
            log, "log.compaction_step_entries", default: 1_024, range: 1...100_000_000)

        if let raw = table["partitions"], raw.table == nil {
            throw ConfigurationError(file: file, field: "partitions", problem: "must be a table ([partitions])")
        }
        let partitions = table["partitions"]?.table ?? TOMLTable()
        try reader.refuseUnknown(partitions, "partitions", allowed: ["initial_replicas"])
        let peerCount = table["peer"]?.array?.count ?? 0
        initialReplicas = try reader.int(
            partitions, "partitions.initial_replicas", default: min(3, peerCount + 1), range: 1...(peerCount + 1))

        if let raw = table["raft"], raw.table == nil {
            throw ConfigurationError(file: file, field: "raft", problem: "must be a table ([raft])")
        }
        let raft = table["raft"]?.table ?? TOMLTable()
        try reader.refuseUnknown(raft, "raft", allowed: ["tick_ms", "election_ticks", "heartbeat_ticks"])
        tickMilliseconds = try reader.int(raft, "raft.tick_ms", default: 10, range: 1...1_000)
        electionTicks = try reader.int(raft, "raft.election_ticks", default: 50, range: 2...10_000)
        heartbeatTicks = try reader.int(raft, "raft.heartbeat_ticks", default: 5, range: 1...1_000)
        guard heartbeatTicks < electionTicks else {
            throw ConfigurationError(
                file: file, field: "raft.heartbeat_ticks",
                problem: "\(heartbeatTicks) must be below raft.election_ticks (\(electionTicks))")
        }

        guard let storageArray = table["storage"]?.array, !storageArray.isEmpty else {
            throw ConfigurationError(
                file: file, field: "storage",
                problem: "no [[storage]] entries: a node serves at least one storage (name and path)")
        }
        var storages: [StorageEntry] = []
        for (i, value) in storageArray.enumerated() {
            let field = "storage[\(i)]"
            guard let entry = value.table else {
                throw ConfigurationError(file: file, field: field, problem: "must be a table ([[storage]])")
            }
            try reader.refuseUnknown(entry, field, allowed: ["name", "path"])
            let name = try reader.parse(entry, "\(field).name", "1 to 64 letters, digits, '-', '_' or '.'") {
                try StorageName($0)
            }
            guard !storages.contains(where: { $0.name == name }) else {
                throw ConfigurationError(
                    file: file, field: "\(field).name", problem: "storage \(name) is listed twice: names are unique")
            }
            let path = reader.resolve(try reader.string(entry, "\(field).path"))
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ConfigurationError(
                    file: file, field: "\(field).path",
                    problem: "\(path) is not a directory: create it (mkdir -p \(path)) or fix the path")
            }
            guard !storages.contains(where: { $0.path == path }) else {
                throw ConfigurationError(
                    file: file, field: "\(field).path", problem: "\(path) is also another storage's path")
            }
            storages.append(StorageEntry(name: name, path: path))
        }
        self.storages = storages

        if let raw = table["peer"], raw.array == nil {
            throw ConfigurationError(
                file: file, field: "peer", problem: "must be an array of tables: write [[peer]], not [peer]")
        }
        if let raw = table["storage"], raw.array == nil {
            throw ConfigurationError(
                file: file, field: "storage", problem: "must be an array of tables: write [[storage]], not [storage]")
        }
        var peers: [PeerEntry] = []
        let peerValues = table["peer"]?.array.map { Array($0) } ?? []
        guard peerValues.count < StoredConfState.maximumMembers else {
            throw ConfigurationError(
                file: file, field: "peer",
                problem: "\(peerValues.count) peers: a cluster has at most \(StoredConfState.maximumMembers) nodes")
        }
        for (i, value) in peerValues.enumerated() {
            let field = "peer[\(i)]"
            guard let entry = value.table else {
                throw ConfigurationError(file: file, field: field, problem: "must be a table ([[peer]])")
            }
            try reader.refuseUnknown(entry, field, allowed: ["name", "id", "address", "grpc", "git", "storages"])
            let id = try reader.parse(entry, "\(field).id", "the peer's node UUID") { try NodeID(parsing: $0) }
            guard id != nodeID, !peers.contains(where: { $0.id == id }) else {
                throw ConfigurationError(
                    file: file, field: "\(field).id", problem: "node \(id) is listed twice (or is this node)")
            }
            guard let names = entry["storages"]?.array, !names.isEmpty else {
                throw ConfigurationError(
                    file: file, field: "\(field).storages", problem: "list the peer's storage names, e.g. [\"s2\"]")
            }
            var peerStorages: [StorageName] = []
            for name in names {
                guard let text = name.string, let storage = try? StorageName(text) else {
                    throw ConfigurationError(
                        file: file, field: "\(field).storages", problem: "\(name) is not a valid storage name")
                }
                let taken =
                    storages.contains { $0.name == storage } || peers.contains { $0.storages.contains(storage) }
                    || peerStorages.contains(storage)
                guard !taken else {
                    throw ConfigurationError(
                        file: file, field: "\(field).storages",
                        problem: "storage \(storage) is listed on two nodes: storage names are unique in a cluster")
                }
                peerStorages.append(storage)
            }
            peers.append(
                PeerEntry(
                    name: try reader.string(entry, "\(field).name"), id: id,
                    address: try reader.address(entry, "\(field).address"),
                    clientAddress: try reader.address(entry, "\(field).grpc"),
                    gitAddress: entry["git"] == nil ? nil : try reader.address(entry, "\(field).git"),
                    storages: peerStorages))
        }
        self.peers = peers
    }

    /// Which node serves which storage, for the host.
    var clusterMap: [NodeID: [StorageName]] {
        var map: [NodeID: [StorageName]] = [nodeID: storages.map(\.name)]
        for peer in peers { map[peer.id] = peer.storages }
        return map
    }

    /// Reads fields, naming each one in its errors.
    private struct Reader {
        let file: String
        let directory: String

        func error(_ field: String, _ problem: String) -> ConfigurationError {
            ConfigurationError(file: file, field: field, problem: problem)
        }

        func refuseUnknown(_ table: TOMLTable, _ prefix: String, allowed: Set<String>) throws(ConfigurationError) {
            for key in table.keys where !allowed.contains(key) {
                let field = prefix.isEmpty ? key : "\(prefix).\(key)"
                throw error(field, "unknown field (known here: \(allowed.sorted().joined(separator: ", ")))")
            }
        }

        func table(_ table: TOMLTable, _ key: String) throws(ConfigurationError) -> TOMLTable {
            guard let value = table[key] else { throw error(key, "missing: add a [\(key)] table") }
            guard let inner = value.table else { throw error(key, "must be a table ([\(key)])") }
            return inner
        }

        private func last(_ field: String) -> String { String(field.split(separator: ".").last ?? "") }

        func string(_ table: TOMLTable, _ field: String) throws(ConfigurationError) -> String {
            guard let value = table[last(field)] else { throw error(field, "missing") }
            guard let text = value.string, !text.isEmpty else { throw error(field, "must be a non-empty string") }
            return text
        }

        func int(
            _ table: TOMLTable, _ field: String, default value: Int, range: ClosedRange<Int>
        )
            throws(ConfigurationError) -> Int
        {
            guard let raw = table[last(field)] else { return value }
            guard let number = raw.int else { throw error(field, "must be an integer") }
            guard range.contains(number) else {
                throw error(field, "\(number) is out of range: use \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }

        func parse<T>(
            _ table: TOMLTable, _ field: String, _ expected: String, _ make: (String) throws -> T
        )
            throws(ConfigurationError) -> T
        {
            let text = try string(table, field)
            do {
                return try make(text)
            } catch {
                throw self.error(field, "'\(text)' is not valid (\(expected)): \(error)")
            }
        }

        func address(_ table: TOMLTable, _ field: String) throws(ConfigurationError) -> PeerAddress {
            let text = try string(table, field)
            do {
                return try PeerAddress(parsing: text)
            } catch {
                throw self.error(field, "\(error)")
            }
        }

        func resolve(_ path: String) -> String {
            path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
        }

        func existingFile(_ table: TOMLTable, _ field: String) throws(ConfigurationError) -> String {
            let path = resolve(try string(table, field))
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw error(field, "\(path) does not exist or is not readable")
            }
            return path
        }

        /// A secret or token file: readable, not readable by group or others, long enough.
        func secretFile(_ table: TOMLTable, _ field: String, minimumBytes: Int) throws(ConfigurationError) -> [UInt8] {
            let path = try privateFile(table, field)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw error(field, "\(path) is not readable by this user")
            }
            var bytes = Array(data)
            while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 { bytes.removeLast() }
            guard bytes.count >= minimumBytes else {
                throw error(field, "\(path) holds \(bytes.count) bytes; at least \(minimumBytes) are needed")
            }
            return bytes
        }

        /// The path of a file only its owner may read: it exists, belongs to the user
        /// running raftd, and group and others have no access.
        func privateFile(_ table: TOMLTable, _ field: String) throws(ConfigurationError) -> String {
            let path = resolve(try string(table, field))
            var info = stat()
            guard stat(path, &info) == 0 else {
                throw error(field, "\(path) does not exist: `raftd init` writes one, or fix the path")
            }
            guard info.st_uid == geteuid() else {
                throw error(
                    field, "\(path) belongs to user \(info.st_uid), not to the user running raftd (\(geteuid()))")
            }
            guard info.st_mode & 0o077 == 0 else {
                throw error(
                    field,
                    "\(path) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))): run chmod 600 \(path)"
                )
            }
            return path
        }
    }
}

import Foundation
import RaftClient
import Synchronization

/// What the in-process cluster (`LocalCluster`) and the multi-process one
/// (`ProcessCluster`) have in common: numbered nodes that start, crash and stop.
public protocol ClusterHarness: AnyObject {
    var nodeCount: Int { get }
    /// Starts node `i` (again, after a crash: from what its storage holds).
    func start(_ i: Int) throws
    /// Stops node `i` abruptly (the in-process cluster: off the network, then stopped;
    /// processes: SIGKILL).
    func crash(_ i: Int)
    func stopAll()
}

extension ClusterHarness {
    public func startAll() throws { for i in 0..<nodeCount { try start(i) } }
}

extension LocalCluster: ClusterHarness {}

/// Three (or n) `raftd serve` processes on 127.0.0.1 made by `raftd init`, with real
/// sockets and real `kill -9`: the daemon's test and demo cluster. Each node logs to
/// `<directory>/node<k>.log`.
public final class ProcessCluster: ClusterHarness, @unchecked Sendable {
    public let binary: String
    public let directory: String
    public let nodeCount: Int
    public let basePort: Int
    /// gRPC endpoints, node by node.
    public let endpoints: [String]
    /// HTTP endpoints (metrics, health), node by node.
    public let httpEndpoints: [String]
    /// Git smart HTTP endpoints (host:port), node by node.
    public let gitEndpoints: [String]
    public let tokenFile: String
    /// With `tls`: the CA clients verify the nodes against (`raftd init --tls`).
    public let clientTLS: RaftClient.TLS?
    /// The nodes' election timeout (its lower end: timers are randomized up to twice it).
    public let electionTimeout: Duration
    public let token: String
    private let ownsDirectory: Bool
    private var processes: [Process?]

    /// Writes the cluster with `raftd init` (ports from `basePort`, or a random free-looking
    /// range). Nothing runs until `start`.
    public init(
        binary: String, nodes: Int = 3, basePort: Int? = nil, directory: String? = nil, tickMilliseconds: Int = 10,
        electionTicks: Int = 50, tls: Bool = false, initialReplicas: Int? = nil
    )
        throws
    {
        self.binary = binary
        nodeCount = nodes
        if let directory {
            self.directory = directory
            ownsDirectory = false
        } else {
            self.directory = try TemporaryDirectory("raftd-processes").path
            ownsDirectory = true
        }
        let base = basePort ?? Self.nextBasePort()
        self.basePort = base
        electionTimeout = .milliseconds(tickMilliseconds * electionTicks)
        clientTLS = tls ? RaftClient.TLS(caFile: self.directory + "/tls/ca.pem") : nil
        let (status, output) = Self.run(
            binary,
            [
                "init", "--nodes", "\(nodes)", "--dir", self.directory, "--base-port", "\(base)", "--tick-ms",
                "\(tickMilliseconds)", "--election-ticks", "\(electionTicks)", "--format", "json",
            ] + (tls ? ["--tls"] : []))
        guard status == 0 else { throw LocalClusterError("raftd init failed (\(status)): \(output)") }
        endpoints = (0..<nodes).map { "127.0.0.1:\(base + 10 * $0 + 1)" }
        httpEndpoints = (0..<nodes).map { "127.0.0.1:\(base + 10 * $0 + 2)" }
        gitEndpoints = (0..<nodes).map { "127.0.0.1:\(base + 10 * $0 + 3)" }
        tokenFile = self.directory + "/token"
        token = String(decoding: FileManager.default.contents(atPath: tokenFile) ?? Data(), as: UTF8.self)
        processes = Array(repeating: nil, count: nodes)
        if let initialReplicas {
            for i in 0..<nodes {
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: configFile(i)))
                try handle.seekToEnd()
                try handle.write(contentsOf: Data("\n[partitions]\ninitial_replicas = \(initialReplicas)\n".utf8))
                try handle.close()
            }
        }
    }

    /// Port blocks of 100 from 20,000 to 32,699: below Linux's ephemeral range (32,768 and
    /// up, where a client connection's local port can hold a port a node wants to listen
    /// on), and distinct for every cluster of this process (suites run in parallel), from a
    /// random first block (test processes run one after another).
    private static let nextBlock = Mutex<Int>(Int.random(in: 0..<127))

    static func nextBasePort() -> Int {
        nextBlock.withLock { block in
            defer { block = (block + 1) % 127 }
            return 20_000 + 100 * block
        }
    }

    public func configFile(_ i: Int) -> String { "\(directory)/node\(i + 1).toml" }
    public func storagePath(_ i: Int) -> String { "\(directory)/data/node\(i + 1)" }
    public func logFile(_ i: Int) -> String { "\(directory)/node\(i + 1).log" }
    public func isRunning(_ i: Int) -> Bool { processes[i]?.isRunning ?? false }
    public func pid(_ i: Int) -> Int32? { processes[i]?.processIdentifier }

    public func start(_ i: Int) throws {
        precondition(processes[i] == nil, "node \(i) is running")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--config", configFile(i), "--exit-with-parent"]
        FileManager.default.createFile(atPath: logFile(i), contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile(i)))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        processes[i] = process
    }

    /// Waits until node `i` answers on its gRPC port (its storages open, its listeners up).
    public func waitReady(_ i: Int, within seconds: Double = 60) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        let client = try RaftClient(endpoints: [endpoints[i]], token: token, deadline: .seconds(1), tls: clientTLS)
        defer { client.close() }
        while Date() < deadline {
            guard isRunning(i) else {
                throw LocalClusterError(
                    "node \(i) exited (\(processes[i]?.terminationStatus ?? -1)); see \(logFile(i))")
            }
            if (try? await client.clusterInfo(at: endpoints[i])) != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw LocalClusterError("node \(i) did not answer on \(endpoints[i]) within \(seconds) s; see \(logFile(i))")
    }

    public func waitAllReady(within seconds: Double = 60) async throws {
        for i in 0..<nodeCount where isRunning(i) { try await waitReady(i, within: seconds) }
    }

    /// SIGKILL, and waits for the process to be gone.
    public func crash(_ i: Int) {
        guard let process = processes[i] else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        processes[i] = nil
    }

    /// SIGTERM (graceful shutdown); returns the exit status.
    @discardableResult
    public func stop(_ i: Int) -> Int32 {
        guard let process = processes[i] else { return 0 }
        process.terminate()
        process.waitUntilExit()
        processes[i] = nil
        return process.terminationStatus
    }

    public func stopAll() {
        for i in 0..<nodeCount { stop(i) }
        if ownsDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// A client of the whole cluster.
    public func client(endpoints chosen: [String]? = nil, deadline: Duration = .seconds(20)) throws -> RaftClient {
        try RaftClient(endpoints: chosen ?? endpoints, token: token, deadline: deadline, tls: clientTLS)
    }

    /// Runs the `raftd` binary with `arguments`; its exit status and combined output.
    public static func run(_ binary: String, _ arguments: [String]) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

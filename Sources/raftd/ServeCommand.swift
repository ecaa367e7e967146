import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOPosix
import RaftAPI
import RaftEngine
import ServiceLifecycle

/// `raftd serve --config FILE`: one node of a cluster, until SIGTERM or SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run one raftd node (peer, gRPC and HTTP listeners) from its TOML configuration.",
        discussion: """
            `raftd init` writes a ready configuration per node. On SIGTERM or SIGINT the node stops \
            accepting clients, finishes the requests in flight, writes and syncs its WAL, and exits 0.
            """)

    @Option(name: .long, help: "The node's TOML configuration file.")
    var config: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Flag(name: .long, help: "Initialize storages whose directory is empty (a new storage added to the configuration).")
    var initializeStorages = false

    @Flag(name: .long, help: .hidden)
    var exitWithParent = false

    func run() async throws {
        if exitWithParent { Self.exitWithParent() }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError(
                "--log-level '\(logLevel)': use trace, debug, info, notice, warning, error or critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "raftd")
        let configuration: NodeConfiguration
        do {
            configuration = try NodeConfiguration(file: config)
            try Self.checkPorts(configuration)
        } catch {
            FileHandle.standardError.write(Data("raftd serve: configuration error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        logger[metadataKey: "node"] = "\(configuration.name)"
        let metrics = ServerMetrics()
        let server: RaftServer
        do {
            server = try RaftServer(
                configuration: configuration, logger: logger, initializeStorages: initializeStorages)
            try await server.start()
        } catch {
            FileHandle.standardError.write(Data("raftd serve: cannot start: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let service = NodeService(server: server, metrics: metrics, logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A client that never reads its stream cannot hold the shutdown (and the WAL sync
        // after it) for ever: past this, the listeners are cancelled and the node stops.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(30)
        let group = ServiceGroup(configuration: groupConfiguration)
        do {
            try await group.run()
        } catch {
            logger.error("the node stopped on an error", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }

    /// Exits when the parent process is gone (test harnesses: a crashed test leaves no node
    /// running). Watches the parent's PID rather than PR_SET_PDEATHSIG, which fires when the
    /// spawning thread exits.
    static func exitWithParent() {
        let parent = getppid()
        let thread = Thread {
            while true {
                if getppid() != parent { Glibc.exit(1) }
                usleep(200_000)
            }
        }
        thread.start()
    }

    /// Refuses a listen address that is in use now, naming its field (bound again right
    /// after: a race with another process is possible and then fails at that bind).
    static func checkPorts(_ configuration: NodeConfiguration) throws {
        var listeners = [
            ("listen.peer", configuration.peerListen), ("listen.grpc", configuration.grpcListen),
            ("listen.http", configuration.httpListen),
        ]
        if let git = configuration.gitListen { listeners.append(("listen.git", git)) }
        for (field, address) in listeners {
            let channel: any Channel
            do {
                channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: address.host, port: address.port).wait()
            } catch {
                throw ConfigurationError(
                    file: configuration.file, field: field,
                    problem:
                        "cannot listen on \(address): \(error). Another process may use the port: stop it or choose another port"
                )
            }
            try? channel.close().wait()
        }
    }
}

/// The node's listeners and their orderly shutdown, run by swift-service-lifecycle.
struct NodeService: Service {
    let server: RaftServer
    let metrics: ServerMetrics
    let logger: Logger

    func run() async throws {
        let configuration = server.configuration
        let requests = RequestCounters()
        let operations = APIOperations(server: server)
        let streams = BatchStreams()
        var grpcConfiguration = HTTP2ServerTransport.Posix.Config.defaults
        grpcConfiguration.http2.maxConcurrentStreams = 256
        grpcConfiguration.connection.maxGraceTime = .seconds(15)
        // TLS when configured: the certificate and key of the peer port. Clients verify
        // the server against the CA (`--tls-ca-file`); they prove themselves with the token.
        var grpcSecurity = HTTP2ServerTransport.Posix.TransportSecurity.plaintext
        if let cert = configuration.tlsCertificateFile, let key = configuration.tlsKeyFile {
            grpcSecurity = .tls(
                certificateChain: [.file(path: cert, format: .pem)], privateKey: .file(path: key, format: .pem))
        }
        let grpc = GRPCServer(
            transport: .http2NIOPosix(
                address: .ipv4(host: configuration.grpcListen.host, port: configuration.grpcListen.port),
                transportSecurity: grpcSecurity, config: grpcConfiguration),
            services: [
                RepositoryServiceImpl(operations: operations, counters: requests),
                RefServiceImpl(operations: operations, counters: requests, maximumOutstanding: 4_096, streams: streams),
                ObjectPoolServiceImpl(operations: operations, counters: requests),
                ClusterServiceImpl(operations: operations, counters: requests),
            ],
            interceptors: [TokenInterceptor(token: configuration.token, counters: requests)])
        let server = self.server
        let metrics = self.metrics
        let http = try await HTTPEndpoint.start(
            host: configuration.httpListen.host, port: configuration.httpListen.port,
            group: .singletonMultiThreadedEventLoopGroup
        ) { path in
            switch path {
            case "/metrics":
                await metrics.update(server: server, requests: requests)
                return (.ok, "text/plain; version=0.0.4", metrics.text())
            case "/healthz":
                return (.ok, "text/plain", "ok\n")
            case "/readyz":
                let problems = await server.readiness()
                return problems.isEmpty
                    ? (.ok, "text/plain", "ready\n")
                    : (.serviceUnavailable, "text/plain", problems.joined(separator: "\n") + "\n")
            default:
                return (.notFound, "text/plain", "not found: try /metrics, /healthz or /readyz\n")
            }
        }
        var git: GitHTTPServer? = nil
        if let listen = configuration.gitListen {
            do {
                let executable =
                    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                    ?? CommandLine.arguments[0]
                let hook = URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent(
                    "raftd-git-hook"
                ).path
                let service = try GitService(server: server, hook: hook)
                git = try await GitHTTPServer.start(
                    host: listen.host, port: listen.port, group: .singletonMultiThreadedEventLoopGroup, service: service
                )
                metrics.git = service.counters
            } catch {
                logger.error(
                    "listen.git: cannot serve Git over HTTP", metadata: ["address": "\(listen)", "error": "\(error)"])
                await http.stop()
                await server.stop()
                throw error
            }
        }
        if let tls = configuration.peerTLS {
            let days = (tls.notValidAfter - Int(Date().timeIntervalSince1970)) / 86_400
            if days < 30 {
                logger.warning(
                    "tls.cert_file expires in \(days) days: issue a new certificate from the cluster's CA before then (an expired one fails every new peer and client connection)",
                    metadata: ["file": "\(configuration.tlsCertificateFile ?? "")"])
            }
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await grpc.serve() }
            do {
                _ = try await grpc.listeningAddress
            } catch {
                logger.error(
                    "listen.grpc: cannot listen",
                    metadata: ["address": "\(configuration.grpcListen)", "error": "\(error)"])
                grpc.beginGracefulShutdown()
                await git?.stop()
                await http.stop()
                await server.stop()
                throw error
            }
            logger.info(
                "raftd node serving",
                metadata: [
                    "peer": "\(configuration.peerListen)", "grpc": "\(configuration.grpcListen)",
                    "http": "\(configuration.httpListen)", "git": "\(configuration.gitListen.map { "\($0)" } ?? "off")",
                    "storages": "\(configuration.storages.map(\.name))",
                    "partitions": "\(server.machines.count)",
                ])
            try? await gracefulShutdown()
            logger.info("shutting down: no new clients; finishing requests in flight")
            // Batch streams stay open as long as their clients like: end them (what they
            // sent is answered first), or the graceful shutdown would wait for the clients.
            await streams.closeAll()
            grpc.beginGracefulShutdown()
        }
        await git?.stop()
        await http.stop()
        await server.stop()
        logger.info("stopped: the WAL is synced and every storage closed")
    }
}

import ArgumentParser
import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RaftAPI
import RaftClient
import RaftEngine
import RaftTesting
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the bench's callers share.
final class BenchState: Sendable {
    let measuring = Atomic<Bool>(false)
    let stop = Atomic<Bool>(false)
    /// Successful writes, warm-up included (what per-write server counters divide by).
    let all = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
}

/// One caller's measurements.
struct BenchCallerResult: Sendable {
    var latencies = Latencies()
    var errors = ErrorCounts()
}

/// What is driven: a raftd cluster (reference transactions) or an etcd cluster (puts).
enum BenchTarget: String, ExpressibleByArgument, CaseIterable {
    case raftd
    case etcd
}

/// `raftd bench`: a load generator against a running cluster, from its own process. One
/// load shape for both targets, so that one generator serves both in a side by side:
/// - raftd: each write is a reference transaction in a repository's partition. The
///   benchmark pushes a chain of commits to every partition once at set-up; each caller
///   then moves a reference of its own among those commits by compare-and-set, and
///   `--value-size` pads the transaction with a key-value set of that many bytes (the
///   counterpart of an etcd put).
/// - etcd: each write is a put of `--value-size` bytes through etcd's gRPC KV API, to one
///   of `--partitions` keys (etcd has one group: partitions become keys).
/// Latencies go into an HdrHistogram; CPU is read from /proc for the target processes
/// that listen on this machine, and for the generator itself.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract:
            "Drive a running raftd or etcd cluster with writes from many concurrent callers; report writes/s, latency and CPU."
    )

    @Option(name: .long, help: "Comma-separated gRPC endpoints (host:port).") var endpoints: String
    @Option(name: .long, help: "raftd or etcd.") var target: BenchTarget = .raftd
    @Option(name: .long, help: "raftd: the client token file.") var tokenFile: String?
    @Option(name: .long, help: "raftd: the CA certificate that signed the nodes' certificates (TLS).") var tlsCaFile:
        String?
    @Option(name: .long, help: "Partitions (raftd: one repository each, created when missing; etcd: distinct keys).")
    var partitions = 1
    @Option(name: .long, help: "Concurrent callers.") var clients = 64
    @Option(name: .long, help: "Bytes of value per write.") var valueSize = 256
    @Option(name: .long, help: "Seconds of measured load.") var duration = 10.0
    @Option(name: .long, help: "Seconds of load before measuring.") var warmup = 2.0
    @Option(name: .long, help: "raftd: batch (the batch stream) or unary.") var mode = "batch"
    @Option(
        name: .long,
        help:
            "raftd: refs (each write moves a reference, padded with a value of --value-size: the default) or values (each write sets a value only, without the Git reference files; the engine's counterpart of an etcd put)."
    )
    var workload = "refs"
    @Option(
        name: .long,
        help:
            "TCP ports whose local listeners' CPU is reported (default: the endpoints' ports; give all members' ports when driving one endpoint)."
    )
    var cpuPorts: String?
    @Option(name: .long, help: "A label for this run in the output.") var label: String?
    @Option(name: .long, help: "Output format: text or json.") var format: OutputFormat = .text

    func validate() throws {
        guard ["batch", "unary"].contains(mode) else { throw ValidationError("--mode \(mode): use batch or unary") }
        guard ["refs", "values"].contains(workload) else {
            throw ValidationError("--workload \(workload): use refs or values")
        }
        guard partitions >= 1, clients >= 1, clients <= 10_000, valueSize >= 0, valueSize <= 64 << 20 else {
            throw ValidationError(
                "--partitions and --clients at least 1 (clients at most 10000), --value-size 0...64 MiB")
        }
        guard duration > 0, warmup >= 0 else { throw ValidationError("--duration above 0, --warmup at least 0") }
        guard target == .etcd || tokenFile != nil else { throw ValidationError("--token-file is needed for raftd") }
        guard !endpointList.isEmpty, endpointList.allSatisfy({ Self.split($0) != nil }) else {
            throw ValidationError("--endpoints \(endpoints): give host:port[,host:port...]")
        }
    }

    var endpointList: [String] { endpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    static func split(_ endpoint: String) -> (String, Int)? {
        let parts = endpoint.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else { return nil }
        return (String(parts[0]), port)
    }

    func run() async throws {
        let shared = BenchState()
        let body: @Sendable (Int) async -> BenchCallerResult
        let cleanup: () -> Void
        switch target {
        case .raftd:
            let driver = try await RaftdBenchDriver(self)
            body = { caller in await driver.caller(caller, shared) }
            cleanup = { driver.close() }
        case .etcd:
            let driver = try EtcdBenchDriver(self)
            body = { caller in await driver.caller(caller, shared) }
            cleanup = { driver.close() }
        }
        defer { cleanup() }

        let ports =
            cpuPorts.map { $0.split(separator: ",").compactMap { Int($0) } }
            ?? endpointList.compactMap { Self.split($0)?.1 }
        let pids = ProcessCPU.listeners(ports: ports)
        let start = ContinuousClock.now
        let progress = Task {
            var last = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let now = shared.all.load(ordering: .relaxed)
                let phase =
                    shared.stop.load(ordering: .relaxed)
                    ? " (stopping)" : shared.measuring.load(ordering: .relaxed) ? "" : " (warm-up or done)"
                FileHandle.standardError.write(
                    Data(
                        "\r\u{1B}[K\(Int((ContinuousClock.now - start).seconds)) s\(phase): \(now - last) writes/s, \(shared.failures.load(ordering: .relaxed)) errors"
                            .utf8))
                last = now
            }
        }
        let (result, seconds) = await withTaskGroup(of: BenchCallerResult.self) { group in
            for caller in 0..<clients { group.addTask { await body(caller) } }
            try? await Task.sleep(for: .milliseconds(Int(warmup * 1000)))
            let targetCPU = CPUMeter(pids: pids)
            let ownCPU = CPUMeter(pids: [getpid()])
            shared.measuring.store(true, ordering: .relaxed)
            let measuredStart = ContinuousClock.now
            try? await Task.sleep(for: .milliseconds(Int(duration * 1000)))
            shared.measuring.store(false, ordering: .relaxed)
            let measured = (ContinuousClock.now - measuredStart).seconds
            let cpu = (targetCPU.used(), ownCPU.used())
            shared.stop.store(true, ordering: .relaxed)
            var all = BenchCallerResult()
            for await part in group {
                all.latencies.add(part.latencies)
                all.errors.add(part.errors)
            }
            return ((all, cpu), measured)
        }
        progress.cancel()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        let (measured, cpu) = result
        report(
            measured, seconds: seconds, all: shared.all.load(ordering: .relaxed), targetCPU: pids.isEmpty ? nil : cpu.0,
            ownCPU: cpu.1, processes: pids.count)
    }

    private func report(
        _ result: BenchCallerResult, seconds: Double, all: Int, targetCPU: Double?, ownCPU: Double, processes: Int
    ) {
        let writes = Double(result.latencies.count)
        let rate = writes / seconds
        let megabytes = rate * Double(valueSize) / 1e6
        let perWrite = { (cpu: Double) in writes > 0 ? cpu / writes * 1e6 : 0 }
        let name = label ?? "\(target.rawValue)\(target == .raftd ? " \(mode) \(workload)" : "")"
        switch format {
        case .json:
            var members = [
                "\"label\":\"\(name)\"", "\"target\":\"\(target.rawValue)\"", "\"mode\":\"\(mode)\"",
                "\"workload\":\"\(target == .etcd ? "put" : workload)\"",
                "\"partitions\":\(partitions)", "\"clients\":\(clients)", "\"value_size\":\(valueSize)",
                "\"seconds\":\(String(format: "%.2f", seconds))", "\"writes\":\(Int(writes))", "\"writes_all\":\(all)",
                "\"writes_per_second\":\(String(format: "%.0f", rate))",
                "\"mb_per_second\":\(String(format: "%.2f", megabytes))",
                result.latencies.jsonMembers, "\"errors\":\(result.errors.json)",
                "\"generator_cpu_us_per_write\":\(String(format: "%.1f", perWrite(ownCPU)))",
            ]
            if let targetCPU {
                members.append("\"target_processes\":\(processes)")
                members.append("\"target_cpu_us_per_write\":\(String(format: "%.1f", perWrite(targetCPU)))")
                members.append("\"target_cpu_cores\":\(String(format: "%.2f", targetCPU / seconds))")
            }
            print("{" + members.joined(separator: ",") + "}")
        case .text:
            print(
                "\(name): \(partitions) partitions, \(clients) callers, \(valueSize) B: \(String(format: "%.0f", rate)) writes/s (\(String(format: "%.2f", megabytes)) MB/s) over \(String(format: "%.1f", seconds)) s; latency ms \(result.latencies.text)"
            )
            var cpu = "CPU per write: generator \(String(format: "%.0f", perWrite(ownCPU))) µs"
            if let targetCPU {
                cpu +=
                    ", \(processes) target processes \(String(format: "%.0f", perWrite(targetCPU))) µs (\(String(format: "%.2f", targetCPU / seconds)) cores)"
            }
            print(cpu)
            if result.errors.total > 0 {
                print("errors: \(result.errors.text)")
                for (type, example) in result.errors.examples.sorted(by: { $0.key < $1.key }) {
                    print("  \(type), e.g.: \(example)")
                }
            }
        }
    }
}

/// raftd: reference transactions through the Swift client.
final class RaftdBenchDriver: Sendable {
    let client: RaftClient
    let paths: [String]
    let chain: [String]
    let value: Data
    let unary: Bool
    /// Values only: no reference moves.
    let valuesOnly: Bool
    /// Distinguishes this run's references from earlier runs' (each run starts its own).
    let run = String(UInt32.random(in: 0...UInt32.max), radix: 16)

    init(_ options: BenchCommand) async throws {
        guard let tokenFile = options.tokenFile, let token = FileManager.default.contents(atPath: tokenFile) else {
            throw ValidationError("--token-file \(options.tokenFile ?? "") cannot be read")
        }
        let tokenText = String(decoding: token, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let list = options.endpointList
        let tls = options.tlsCaFile.map(RaftClient.TLS.init)
        client = try RaftClient(endpoints: list, token: tokenText, tls: tls)
        paths = (0..<options.partitions).map { "bench/p\($0).git" }
        value = Data(repeating: 0x61, count: options.valueSize)
        unary = options.mode == "unary"
        valuesOnly = options.workload == "values"

        // Set-up: a chain of commits built with git, the repositories (created in parallel
        // where missing), and the chain's pack pushed once to each.
        let scratch = FileManager.default.temporaryDirectory.path + "/raftd-bench-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let commits = try CommitChain(length: 16, directory: scratch)
        chain = commits.commits
        let setupStart = ContinuousClock.now
        let paths = self.paths
        let client = self.client
        let creators = try list.indices.map { i in
            try RaftClient(endpoints: [list[i]] + list.filter { $0 != list[i] }, token: tokenText, tls: tls)
        }
        defer { for creator in creators { creator.close() } }
        let failed = Mutex<[String]>([])
        try await concurrently(paths.count, width: 32) { n in
            let path = paths[n]
            let creator = creators[n % creators.count]
            if try await !creator.repositoryExists(path).exists {
                try await creator.createRepositoryRetrying(path)
            }
            // The chain's tip on refs/heads/main, with the pack: done once per repository
            // (a run again finds it there).
            let tip = commits.commits.last!
            for _ in 0..<20 {
                var read = Raftd_V1_ListRefsRequest()
                read.repository.relativePath = path
                read.prefix = "refs/heads/main"
                let current: String?
                do {
                    current = try await client.listRefs(read).references.first { $0.name == "refs/heads/main" }?.oid
                } catch let error as RaftClientError where [.notFound, .unavailable, .notLeader].contains(error.code) {
                    // Created a moment ago through another node: not yet applied where the
                    // read went.
                    try await Task.sleep(for: .milliseconds(100))
                    continue
                }
                if current == tip { return }
                var request = Raftd_V1_UpdateReferencesRequest()
                request.repository.relativePath = path
                var update = Raftd_V1_ReferenceUpdate()
                update.reference = "refs/heads/main"
                update.oldOid = current ?? ObjectID.zero.hex
                update.newOid = tip
                request.updates = [update]
                request.pack = commits.pack
                do {
                    _ = try await client.updateReferences(request)
                    return
                } catch let error as RaftClientError
                    where [.unknownOutcome, .unavailable, .referenceMismatch, .notFound].contains(error.code)
                {
                    try await Task.sleep(for: .milliseconds(200))  // read again, then retry
                }
            }
            failed.withLock { $0.append(path) }
        }
        if let first = failed.withLock({ $0.first }) {
            throw ValidationError(
                "set-up: pushing the commits failed for \(failed.withLock { $0.count }) partitions, e.g. \(first)")
        }
        FileHandle.standardError.write(
            Data(
                "set-up: \(paths.count) repositories with \(chain.count) commits each, ready in \(String(format: "%.1f", (ContinuousClock.now - setupStart).seconds)) s\n"
                    .utf8))
    }

    /// One caller: moves its own reference in random partitions along the chain by
    /// compare-and-set. After an error its reference's state is unknown: it starts a new
    /// one (a new generation) instead of reading.
    func caller(_ caller: Int, _ shared: BenchState) async -> BenchCallerResult {
        var result = BenchCallerResult()
        var generator = SystemRandomNumberGenerator()
        var generation = 0
        var positions: [Int: Int] = [:]  // partition -> index in the chain (absent: no ref yet)
        var n = 0
        while !shared.stop.load(ordering: .relaxed) {
            let partition = Int.random(in: 0..<paths.count, using: &generator)
            let position = positions[partition]
            let next = ((position ?? -1) + 1) % chain.count
            var request = Raftd_V1_UpdateReferencesRequest()
            request.repository.relativePath = paths[partition]
            if !valuesOnly {
                var update = Raftd_V1_ReferenceUpdate()
                update.reference = "refs/heads/bench-\(run)-c\(caller)-g\(generation)"
                update.oldOid = position.map { chain[$0] } ?? ObjectID.zero.hex
                update.newOid = chain[next]
                request.updates = [update]
            }
            if !value.isEmpty || valuesOnly {
                var pair = Raftd_V1_KeyValue()
                pair.key = "bench-c\(caller)-\(n % 16)"
                pair.value = value
                request.setValues = [pair]
            }
            n += 1
            let began = ContinuousClock.now
            do {
                if unary {
                    _ = try await client.updateReferencesUnary(request)
                } else {
                    _ = try await client.updateReferences(request)
                }
                positions[partition] = next
                shared.all.add(1, ordering: .relaxed)
                if shared.measuring.load(ordering: .relaxed) {
                    result.latencies.record(ContinuousClock.now - began)
                }
            } catch {
                generation += 1
                positions.removeAll()
                result.errors.add(
                    (error as? RaftClientError).map { "\($0.code)" } ?? "\(type(of: error))", example: "\(error)")
                shared.failures.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        return result
    }

    func close() { client.close() }
}

/// etcd: puts through etcd's gRPC KV API (client code generated from Debian's
/// golang-etcd-server-dev protos). Callers share one HTTP/2 connection per 16 callers,
/// spread over the endpoints.
final class EtcdBenchDriver: Sendable {
    let clients: [GRPCClient<HTTP2ClientTransport.Posix>]
    let kvs: [Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>]
    let runners: [Task<Void, Never>]
    let partitions: Int
    let value: Data

    init(_ options: BenchCommand) throws {
        let list = options.endpointList
        let connections = max(list.count, (options.clients + 15) / 16)
        var clients: [GRPCClient<HTTP2ClientTransport.Posix>] = []
        var runners: [Task<Void, Never>] = []
        for i in 0..<connections {
            let (host, port) = BenchCommand.split(list[i % list.count])!
            let client = GRPCClient(
                transport: try .http2NIOPosix(
                    target: .ipv4(address: host, port: port), transportSecurity: .plaintext,
                    config: .defaults))
            clients.append(client)
            runners.append(Task { try? await client.runConnections() })
        }
        self.clients = clients
        self.runners = runners
        kvs = clients.map { Etcdserverpb_KV.Client(wrapping: $0) }
        partitions = options.partitions
        value = Data(repeating: 0x61, count: options.valueSize)
    }

    func caller(_ caller: Int, _ shared: BenchState) async -> BenchCallerResult {
        var result = BenchCallerResult()
        var generator = SystemRandomNumberGenerator()
        let kv = kvs[caller % kvs.count]
        var options = CallOptions.defaults
        options.timeout = .seconds(20)
        // Wait for the connection instead of failing while it is (re)established, as
        // etcd's own clients do.
        options.waitForReady = true
        while !shared.stop.load(ordering: .relaxed) {
            var request = Etcdserverpb_PutRequest()
            request.key = Data("bench/p\(Int.random(in: 0..<partitions, using: &generator))".utf8)
            request.value = value
            let began = ContinuousClock.now
            do {
                _ = try await kv.put(request, options: options)
                shared.all.add(1, ordering: .relaxed)
                if shared.measuring.load(ordering: .relaxed) {
                    result.latencies.record(ContinuousClock.now - began)
                }
            } catch let error as RPCError {
                result.errors.add("\(error.code)", example: error.message)
                shared.failures.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(10))
            } catch {
                result.errors.add("\(type(of: error))", example: "\(error)")
                shared.failures.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        return result
    }

    func close() {
        for client in clients { client.beginGracefulShutdown() }
        for runner in runners { runner.cancel() }
    }
}

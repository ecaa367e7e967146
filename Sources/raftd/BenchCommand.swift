import ArgumentParser
import Foundation
import RaftAPI
import RaftClient
import Synchronization

/// What the bench's callers share.
final class BenchState: Sendable {
    let measuring = Atomic<Bool>(false)
    let stop = Atomic<Bool>(false)
    let completed = Atomic<Int>(0)
    let errors = Mutex<[String: Int]>([:])
}

/// `raftd bench`: a load generator against a running cluster, from its own process.
/// Each write is a one-operation transaction (a key-value set of `--value-size` bytes, the
/// counterpart of an etcd put) in a repository's partition, through the batch stream or
/// unary calls. Latencies are exact (every one kept, sorted at the end).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Drive a running cluster with writes from many concurrent callers and report writes/s and latency.")

    @Option(name: .long, help: "Comma-separated gRPC endpoints.") var endpoints: String
    @Option(name: .long, help: "The client token file.") var tokenFile: String
    @Option(name: .long, help: "TLS: the CA certificate that signed the nodes' certificates.") var tlsCaFile: String?
    @Option(name: .long, help: "Partitions (one repository each, created when missing).") var partitions = 1
    @Option(name: .long, help: "Concurrent callers.") var clients = 64
    @Option(name: .long, help: "Bytes per write.") var valueSize = 256
    @Option(name: .long, help: "Seconds of measured load.") var duration = 10.0
    @Option(name: .long, help: "Seconds of load before measuring.") var warmup = 2.0
    @Option(name: .long, help: "batch (the batch stream) or unary.") var mode = "batch"
    @Option(name: .long, help: "Output format: text or json.") var format: OutputFormat = .text

    func validate() throws {
        guard ["batch", "unary"].contains(mode) else { throw ValidationError("--mode \(mode): use batch or unary") }
        guard partitions >= 1, clients >= 1, valueSize >= 0, duration > 0, warmup >= 0 else {
            throw ValidationError("--partitions and --clients at least 1, --duration above 0")
        }
    }

    func run() async throws {
        guard let token = FileManager.default.contents(atPath: tokenFile) else {
            throw ValidationError("--token-file \(tokenFile) cannot be read")
        }
        let list = endpoints.split(separator: ",").map(String.init)
        let tls = tlsCaFile.map(RaftClient.TLS.init)
        let client = try RaftClient(endpoints: list, token: String(decoding: token, as: UTF8.self), tls: tls)
        defer { client.close() }

        // Set-up: the repositories, created in parallel where missing.
        let paths = (0..<partitions).map { "bench/p\($0).git" }
        let setupStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                guard next < paths.count else { return }
                let path = paths[next]
                let endpoint = list[next % list.count]
                next += 1
                group.addTask {
                    let creator = try RaftClient(
                        endpoints: [endpoint] + list.filter { $0 != endpoint },
                        token: String(decoding: token, as: UTF8.self), tls: tls)
                    defer { creator.close() }
                    if try await creator.repositoryExists(path).exists { return }
                    _ = try await creator.createRepository(path)
                }
            }
            for _ in 0..<16 { add() }
            while try await group.next() != nil { add() }
        }
        FileHandle.standardError.write(
            Data("set-up: \(partitions) repositories ready in \(ContinuousClock.now - setupStart)\n".utf8))

        let value = Data(repeating: 0x61, count: valueSize)
        let unary = mode == "unary"
        let shared = BenchState()
        let start = ContinuousClock.now
        let progress = Task {
            var last = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let now = shared.completed.load(ordering: .relaxed)
                FileHandle.standardError.write(
                    Data(
                        "\r\(Int((ContinuousClock.now - start) / .seconds(1))) s: \(now - last) writes/s, errors \(shared.errors.withLock { $0.values.reduce(0, +) })   "
                            .utf8))
                last = now
            }
        }
        let latencies = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for caller in 0..<clients {
                group.addTask {
                    var mine: [Int64] = []
                    mine.reserveCapacity(100_000)
                    var generator = SystemRandomNumberGenerator()
                    var n = 0
                    while !shared.stop.load(ordering: .relaxed) {
                        var request = Raftd_V1_UpdateReferencesRequest()
                        request.repository.relativePath = paths[Int.random(in: 0..<paths.count, using: &generator)]
                        var pair = Raftd_V1_KeyValue()
                        pair.key = "bench-\(caller)-\(n % 64)"
                        pair.value = value
                        request.setValues = [pair]
                        n += 1
                        let began = ContinuousClock.now
                        do {
                            if unary {
                                _ = try await client.updateReferencesUnary(request)
                            } else {
                                _ = try await client.updateReferences(request)
                            }
                            if shared.measuring.load(ordering: .relaxed) {
                                let elapsed = ContinuousClock.now - began
                                mine.append(
                                    elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds
                                        / 1_000_000_000)
                                shared.completed.add(1, ordering: .relaxed)
                            }
                        } catch let error as RaftClientError {
                            shared.errors.withLock { $0["\(error.code)", default: 0] += 1 }
                        }
                    }
                    return mine
                }
            }
            try await Task.sleep(for: .milliseconds(Int(warmup * 1000)))
            shared.measuring.store(true, ordering: .relaxed)
            let measuredStart = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(Int(duration * 1000)))
            shared.measuring.store(false, ordering: .relaxed)
            let measured = ContinuousClock.now - measuredStart
            shared.stop.store(true, ordering: .relaxed)
            var all: [Int64] = []
            for try await part in group { all += part }
            return (all, Double(measured.components.seconds) + Double(measured.components.attoseconds) / 1e18)
        }
        progress.cancel()
        FileHandle.standardError.write(Data("\n".utf8))
        let (samples, seconds) = latencies
        let sorted = samples.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
        }
        let rate = Double(sorted.count) / seconds
        let errorCounts = shared.errors.withLock { $0 }
        switch format {
        case .json:
            let errorsJSON = errorCounts.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(
                separator: ",")
            print(
                "{\"mode\":\"\(mode)\",\"partitions\":\(partitions),\"clients\":\(clients),\"value_size\":\(valueSize),\"seconds\":\(String(format: "%.2f", seconds)),\"writes\":\(sorted.count),\"writes_per_second\":\(String(format: "%.0f", rate)),\"p50_ms\":\(String(format: "%.3f", percentile(0.5))),\"p90_ms\":\(String(format: "%.3f", percentile(0.9))),\"p99_ms\":\(String(format: "%.3f", percentile(0.99))),\"p999_ms\":\(String(format: "%.3f", percentile(0.999))),\"max_ms\":\(String(format: "%.3f", percentile(1))),\"errors\":{\(errorsJSON)}}"
            )
        case .text:
            print(
                "\(mode): \(partitions) partitions, \(clients) callers, \(valueSize) B: \(String(format: "%.0f", rate)) writes/s over \(String(format: "%.1f", seconds)) s; latency ms p50 \(String(format: "%.2f", percentile(0.5))) p90 \(String(format: "%.2f", percentile(0.9))) p99 \(String(format: "%.2f", percentile(0.99))) p99.9 \(String(format: "%.2f", percentile(0.999))) max \(String(format: "%.2f", percentile(1)))"
            )
            if !errorCounts.isEmpty { print("errors: \(errorCounts)") }
        }
    }
}

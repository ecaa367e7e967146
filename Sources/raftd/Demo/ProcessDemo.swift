import ArgumentParser
import Foundation
import RaftAPI
import RaftClient
import RaftTesting
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `raftd demo`: three `raftd serve` processes on 127.0.0.1 made by `raftd init`, driven
/// through the Swift client and Debian's git: partitions created, writes with a live
/// progress line, a push to a follower and a clone from another node, quiescing, `kill -9`
/// of the node leading the most partitions, writes through the failover, its restart and
/// catch-up, and the checks (every acknowledged write on every replica, the clone passes
/// `git fsck`). Exits non-zero if any check fails, keeping the directory and logs.
struct ProcessDemo {
    var partitions: Int
    var seconds: Double
    var writers: Int
    var directory: String?
    var keep: Bool
    var format: OutputFormat

    /// The summary (table or JSON) is built from these.
    struct Summary {
        var partitions = 0
        var createSeconds = 0.0
        var writes = 0
        var writeSeconds = 0.0
        var latencies = Latencies()
        var errors = ErrorCounts()
        var pushSeconds = 0.0
        var cloneSeconds = 0.0
        var gitCommits = 0
        var quiesceSeconds = 0.0
        var replicas = 0
        var quiesced = 0
        var idleFramesPerSecond = 0.0
        var idleCPUPercent = 0.0
        var victim = 0
        var victimLed = 0
        var failoverPolled = 0.0
        var failoverLeaders = 0.0
        var failoverWrites = 0
        var failoverLatencies = Latencies()
        var restartReady = 0.0
        var catchUp = 0.0
        var restartElections = 0.0
        var abandoned = 0
        var checkedWrites = 0
        var checkedReplicas = 0
        var problems: [String] = []
        var cpuPerWriteMicros = 0.0
        var total = 0.0
    }

    func run() async throws {
        let began = ContinuousClock.now
        let binary = try Self.selfBinary()
        let hook = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("raftd-git-hook")
            .path
        guard FileManager.default.isExecutableFile(atPath: hook) else {
            throw ValidationError(
                "\(hook) is missing: raftd serves git pushes through it. Build it next to raftd: swift build -c release --product raftd-git-hook"
            )
        }
        let root: String
        if let directory {
            if let contents = try? FileManager.default.contentsOfDirectory(atPath: directory), !contents.isEmpty {
                throw ValidationError("--dir \(directory) is not empty: give a new or empty directory")
            }
            root = directory
        } else {
            root = FileManager.default.temporaryDirectory.path + "/raftd-demo-\(UUID().uuidString.prefix(8))"
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let cluster = try ProcessCluster(binary: binary, directory: root + "/cluster")
        var summary = Summary()
        summary.partitions = partitions
        var succeeded = false
        defer {
            for i in 0..<cluster.nodeCount where cluster.isRunning(i) { cluster.stop(i) }
            if succeeded && directory == nil && !keep {
                Self.removeTree(root)
            } else {
                say("kept for inspection: \(root) (node logs: \(root)/cluster/node<k>.log)")
            }
        }

        say("raftd demo: 3 raftd serve processes on 127.0.0.1, configs from raftd init, data under \(root)")
        try cluster.startAll()
        try await cluster.waitAllReady()
        let pids = (0..<3).compactMap { cluster.pid($0) }
        say(
            "  nodes up: gRPC \(cluster.endpoints.joined(separator: " ")), Git \(cluster.gitEndpoints.joined(separator: " "))"
        )
        let client = try cluster.client(deadline: .seconds(20))
        defer { client.close() }
        let creators = try (0..<3).map { i in
            try cluster.client(
                endpoints: [cluster.endpoints[i]] + cluster.endpoints.filter { $0 != cluster.endpoints[i] })
        }
        defer { for creator in creators { creator.close() } }

        // 1. Partitions: one repository each, created on every node in turn; the first write
        //    brings the pack of the commits that later writes point references at.
        let chain = try CommitChain(length: 16, directory: root + "/chain")
        let paths = (0..<partitions).map { String(format: "demo/repo-%04d.git", $0) }
        let ledger = DemoLedger(partitions: partitions)
        let seeds = Mutex<[DemoAck]>([])
        let created = Atomic<Int>(0)
        var t0 = ContinuousClock.now
        let creation = progressTask { "  creating partitions: \(created.load(ordering: .relaxed))/\(partitions)" }
        try await concurrently(partitions, width: 32) { n in
            try await creators[n % 3].createRepositoryRetrying(paths[n])
            var errors = ErrorCounts()
            let tip = chain.commits.last!
            guard
                let lsn = await DemoWriters.create(
                    "refs/heads/main", at: tip, in: paths[n], pack: chain.pack, client, &errors)
            else {
                throw LoadError("\(paths[n]): the first write (with the pack) got no outcome in 30 s: \(errors.text)")
            }
            ledger.acknowledge(n, lsn)
            seeds.withLock { $0.append(DemoAck(partition: n, reference: "refs/heads/main", oid: tip)) }
            created.add(1, ordering: .relaxed)
        }
        creation.cancel()
        summary.createSeconds = (ContinuousClock.now - t0).seconds
        endProgress()
        say(
            "created \(partitions) partitions x 3 replicas, each with a first commit and pack, in \(Self.f1(summary.createSeconds)) s"
        )

        // 2. The write workload.
        var cpu = CPUMeter(pids: pids)
        t0 = ContinuousClock.now
        let phase1 = try await writePhase(
            "a", seconds: seconds, paths: paths, chain: chain, client: client, ledger: ledger, label: "writing")
        summary.writeSeconds = (ContinuousClock.now - t0).seconds
        summary.cpuPerWriteMicros = cpu.used() / Double(max(1, phase1.acks.count)) * 1e6
        summary.writes = phase1.acks.count
        summary.latencies = phase1.latencies
        summary.errors.add(phase1.errors)
        say(
            "writes: \(phase1.acks.count) acknowledged by \(writers) writers in \(Self.f1(summary.writeSeconds)) s: \(Int(Double(phase1.acks.count) / summary.writeSeconds)) writes/s, ms \(phase1.latencies.text)"
        )

        // 3. Git: push a repository with history to a follower, clone it from another node.
        let git = try await gitRoundTrip(cluster, client, root: root)
        summary.pushSeconds = git.push
        summary.cloneSeconds = git.clone
        summary.gitCommits = git.commits
        if let problem = git.problem { summary.problems.append(problem) }

        // 4. Quiescing: with no writes, every replica stops ticking and sending.
        t0 = ContinuousClock.now
        var awake = Double.infinity
        var replicas = 0.0
        while ContinuousClock.now - t0 < .seconds(30) {
            let scrapes = (0..<3).compactMap { try? LocalHTTP.get(cluster.httpEndpoints[$0], "/metrics").body }
            awake = scrapes.reduce(0) { $0 + LocalHTTP.metric($1, "raftd_groups", label: "state=\"awake\"") }
            replicas = scrapes.reduce(0) { $0 + LocalHTTP.metric($1, "raftd_replicas") }
            if scrapes.count == 3 && awake == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        summary.quiesceSeconds = (ContinuousClock.now - t0).seconds
        summary.replicas = Int(replicas)
        summary.quiesced = Int(replicas - (awake.isFinite ? awake : replicas))
        // What idle costs, once the nodes have settled (the last applies checkpointed,
        // replicas shrunk to dormant records): a second at a time, up to 8 s.
        let settleStart = ContinuousClock.now
        repeat {
            let frames0 = framesSent(cluster)
            cpu = CPUMeter(pids: pids)
            try await Task.sleep(for: .seconds(1))
            summary.idleFramesPerSecond = framesSent(cluster) - frames0
            summary.idleCPUPercent = cpu.used() * 100
        } while summary.idleCPUPercent > 5 && ContinuousClock.now - settleStart < .seconds(8)
        say(
            "quiesced: \(summary.quiesced) of \(summary.replicas) replicas idle \(Self.f1(summary.quiesceSeconds)) s after the push; settled \(Self.f1((ContinuousClock.now - settleStart).seconds)) s later, a second of idle cost the 3 nodes \(Int(summary.idleFramesPerSecond)) peer frames and \(Self.f1(summary.idleCPUPercent))% of a core in all"
        )

        // 5. Failover: kill -9 the node leading the most partitions, writes going on.
        let leaders = try await leaderMap(cluster, client, paths)
        var led = [0, 0, 0]
        for node in leaders where node >= 0 { led[node] += 1 }
        let victim = led.indices.max { led[$0] < led[$1] }!
        summary.victim = victim + 1
        summary.victimLed = led[victim]
        let orphaned = leaders.indices.filter { leaders[$0] == victim }
        let ledger2 = DemoLedger(partitions: partitions)
        let failoverWriters = Task {
            await DemoWriters.run(
                phase: "b", writers: writers, paths: paths, chain: chain, client: client, ledger: ledger2)
        }
        let failoverProgress = progressTask {
            "  writing through the failover: \(ledger2.acknowledged.load(ordering: .relaxed)) acknowledged"
        }
        try await Task.sleep(for: .seconds(1))
        let killedAt = ContinuousClock.now
        cluster.crash(victim)
        say("killed node \(victim + 1) with kill -9 (pid gone); it led \(led[victim]) of \(partitions) partitions")
        let (polled, byLeaders) = try await waitReLed(cluster, client, paths, orphaned, victim: victim, since: killedAt)
        summary.failoverPolled = polled
        summary.failoverLeaders = byLeaders
        say(
            "failover: all \(orphaned.count) partitions re-led \(Self.ms(byLeaders)) ms after the kill by the new leaders' clocks (\(Self.ms(polled)) ms by polling)"
        )
        try await Task.sleep(for: .seconds(2))

        // 6. Restart: the node's replicas come back dormant and catch up from the leaders.
        let restartedAt = ContinuousClock.now
        try cluster.start(victim)
        try await cluster.waitReady(victim)
        summary.restartReady = (ContinuousClock.now - restartedAt).seconds
        let targets = merged(ledger, ledger2)
        try await waitCaughtUp(cluster, client, paths, node: victim, targets: targets)
        summary.catchUp = (ContinuousClock.now - restartedAt).seconds
        summary.restartElections =
            (try? LocalHTTP.get(cluster.httpEndpoints[victim], "/metrics")).map {
                LocalHTTP.metric($0.body, "raftd_elections_total")
            } ?? -1
        say(
            "restarted node \(victim + 1): answering after \(Self.f1(summary.restartReady)) s, caught up on all \(partitions) partitions after \(Self.f1(summary.catchUp)) s, \(Int(summary.restartElections)) elections started by it"
        )
        try await Task.sleep(for: .seconds(1))
        ledger2.stop.store(true, ordering: .relaxed)
        let phase2 = await failoverWriters.value
        failoverProgress.cancel()
        endProgress()
        summary.failoverWrites = phase2.acks.count
        summary.failoverLatencies = phase2.latencies
        summary.errors.add(phase2.errors)
        summary.abandoned = phase1.abandoned + phase2.abandoned
        say(
            "writes through the kill and restart: \(phase2.acks.count) acknowledged, ms \(phase2.latencies.text); errors the client retried or settled: \(summary.errors.total == 0 ? "none" : summary.errors.text)"
        )

        // 7. Checks: every acknowledged write on every replica.
        let acks = seeds.withLock { $0 } + phase1.acks + phase2.acks
        let lsns = merged(ledger, ledger2)
        say("checking \(acks.count) acknowledged writes on all 3 replicas of \(partitions) partitions...")
        summary.problems += try await checkReplicas(cluster, client, paths, acks: acks, lsns: lsns)
        summary.checkedWrites = acks.count
        summary.checkedReplicas = partitions * 3
        for i in 0..<3 {
            let status = cluster.stop(i)
            if status != 0 { summary.problems.append("node \(i + 1) exited \(status) on SIGTERM (see its log)") }
        }
        summary.total = (ContinuousClock.now - began).seconds
        report(summary)
        guard summary.problems.isEmpty else {
            for problem in summary.problems.prefix(20) { say("FAILED: \(problem)") }
            throw ExitCode(1)
        }
        succeeded = true
    }

    // MARK: output

    private func report(_ s: Summary) {
        let rate = Double(s.writes) / max(0.001, s.writeSeconds)
        switch format {
        case .json:
            output(
                "{\"ok\":\(s.problems.isEmpty),\"nodes\":3,\"partitions\":\(s.partitions),\"create_seconds\":\(Self.f3(s.createSeconds)),"
                    + "\"writes\":\(s.writes),\"writes_per_second\":\(Int(rate)),\(s.latencies.jsonMembers),\"cpu_us_per_write\":\(Int(s.cpuPerWriteMicros)),"
                    + "\"push_ms\":\(Self.ms(s.pushSeconds)),\"clone_ms\":\(Self.ms(s.cloneSeconds)),\"git_commits\":\(s.gitCommits),"
                    + "\"replicas\":\(s.replicas),\"replicas_quiesced\":\(s.quiesced),\"quiesce_seconds\":\(Self.f3(s.quiesceSeconds)),\"idle_peer_frames_per_second\":\(Int(s.idleFramesPerSecond)),\"idle_cpu_percent\":\(Self.f3(s.idleCPUPercent)),"
                    + "\"killed_node\":\(s.victim),\"killed_node_led\":\(s.victimLed),\"failover_ms\":\(Self.ms(s.failoverLeaders)),\"failover_polled_ms\":\(Self.ms(s.failoverPolled)),"
                    + "\"failover_writes\":\(s.failoverWrites),\"failover_p99_ms\":\(Latencies.ms(s.failoverLatencies.milliseconds(99))),\"failover_max_ms\":\(Latencies.ms(s.failoverLatencies.maxMilliseconds)),"
                    + "\"restart_ready_seconds\":\(Self.f3(s.restartReady)),\"catch_up_seconds\":\(Self.f3(s.catchUp)),\"restart_elections\":\(Int(s.restartElections)),"
                    + "\"errors\":\(s.errors.json),\"abandoned_writes\":\(s.abandoned),\"checked_writes\":\(s.checkedWrites),\"checked_replicas\":\(s.checkedReplicas),"
                    + "\"problems\":\(s.problems.count),\"total_seconds\":\(Self.f3(s.total))}")
        case .text:
            let rows: [(String, String)] = [
                ("partitions", "\(s.partitions) x 3 replicas, created in \(Self.f1(s.createSeconds)) s"),
                ("writes/s", "\(Int(rate)) (\(s.writes) in \(Self.f1(s.writeSeconds)) s, \(writers) writers)"),
                (
                    "latency p50 / p99",
                    "\(Self.f2(s.latencies.milliseconds(50))) / \(Self.f2(s.latencies.milliseconds(99))) ms"
                ),
                ("CPU per write", "\(Int(s.cpuPerWriteMicros)) µs (3 nodes)"),
                ("git push (follower)", "\(Self.ms(s.pushSeconds)) ms, \(s.gitCommits) commits"),
                ("git clone (other node)", "\(Self.ms(s.cloneSeconds)) ms, fsck clean"),
                (
                    "quiesced",
                    "\(s.quiesced)/\(s.replicas) replicas; idle: \(Int(s.idleFramesPerSecond)) frames/s, \(Self.f1(s.idleCPUPercent))% CPU"
                ),
                (
                    "failover (kill -9)",
                    "\(Self.ms(s.failoverLeaders)) ms for \(s.victimLed) partitions of node \(s.victim) (\(Self.ms(s.failoverPolled)) ms polled)"
                ),
                (
                    "writes during failover",
                    "\(s.failoverWrites), p99 \(Self.f2(s.failoverLatencies.milliseconds(99))) ms, max \(Self.f2(s.failoverLatencies.maxMilliseconds)) ms"
                ),
                (
                    "restart",
                    "answering in \(Self.f1(s.restartReady)) s, caught up in \(Self.f1(s.catchUp)) s, \(Int(s.restartElections)) elections"
                ),
                (
                    "checks",
                    s.problems.isEmpty
                        ? "ok: \(s.checkedWrites) acknowledged writes on \(s.checkedReplicas) replicas, clone fsck clean"
                        : "FAILED: \(s.problems.count) problems"
                ),
                ("total", "\(Self.f1(s.total)) s"),
            ]
            let width = rows.map(\.0.count).max() ?? 0
            output("")
            for (name, value) in rows {
                output("  \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)")
            }
        }
    }

    private func output(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

    func framesSent(_ cluster: ProcessCluster) -> Double {
        (0..<3).reduce(0) { sum, i in
            guard cluster.isRunning(i), let text = try? LocalHTTP.get(cluster.httpEndpoints[i], "/metrics").body else {
                return sum
            }
            return sum + LocalHTTP.metric(text, "raftd_peer_frames_total", label: "direction=\"sent\"")
        }
    }

    func merged(_ a: DemoLedger, _ b: DemoLedger) -> [UInt64] {
        let x = a.lsns.withLock { $0 }
        let y = b.lsns.withLock { $0 }
        return zip(x, y).map { max($0, $1) }
    }

    /// A line of the story: standard output in text mode, standard error with --format json.
    func say(_ line: String) {
        // Unbuffered, so that the story and the progress lines come out in order.
        (format == .text ? FileHandle.standardOutput : FileHandle.standardError).write(Data((line + "\n").utf8))
    }

    static let interactive = isatty(2) != 0

    /// A progress line on standard error, rewritten in place on a terminal (every 2 s as a
    /// line of its own otherwise).
    func progress(_ line: String) {
        if Self.interactive {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        }
    }

    func progressTask(_ line: @escaping @Sendable () -> String) -> Task<Void, Never> {
        let interactive = Self.interactive
        return Task {
            var n = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                n += 1
                if interactive {
                    FileHandle.standardError.write(Data(("\r\u{1B}[K" + line()).utf8))
                } else if n % 8 == 0 {
                    FileHandle.standardError.write(Data((line() + "\n").utf8))
                }
            }
        }
    }

    func endProgress() {
        if Self.interactive { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    /// `rm -rf` in the background: a hundred thousand reference files and repositories take
    /// half a minute to delete on ext4, which nobody needs to wait for once the summary is out.
    static func removeTree(_ path: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/rm")
        process.arguments = ["-rf", "--", path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
    }

    static func selfBinary() throws -> String {
        guard let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            throw ValidationError("cannot find this program's path (/proc/self/exe)")
        }
        return path
    }

    static func f1(_ x: Double) -> String { String(format: "%.1f", x) }
    static func f2(_ x: Double) -> String { String(format: "%.2f", x) }
    static func f3(_ x: Double) -> String { String(format: "%.3f", x) }
    static func ms(_ seconds: Double) -> Int { Int((seconds * 1000).rounded()) }
}

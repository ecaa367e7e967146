import Foundation
import RaftAPI
import RaftClient
import RaftTesting
import Synchronization

/// The demo's steps that talk to the cluster: the writes, the Git round trip, and the
/// waits and checks around the failover (ProcessDemo.run tells the story).
extension ProcessDemo {
    func writePhase(
        _ phase: String, seconds: Double, paths: [String], chain: CommitChain, client: RaftClient, ledger: DemoLedger,
        label: String
    ) async throws -> DemoWriterResult {
        let started = ContinuousClock.now
        let last = Mutex<(Int, ContinuousClock.Instant)>((0, started))
        let progress = progressTask {
            let now = ContinuousClock.now
            let count = ledger.acknowledged.load(ordering: .relaxed)
            let rate = last.withLock { state -> Double in
                defer { state = (count, now) }
                return Double(count - state.0) / max(0.001, (now - state.1).seconds)
            }
            return
                "  \(label): \(Int((now - started).seconds)) s, \(count) acknowledged, \(Int(rate)) writes/s, errors \(ledger.failed.load(ordering: .relaxed))"
        }
        let task = Task {
            await DemoWriters.run(
                phase: phase, writers: writers, paths: paths, chain: chain, client: client, ledger: ledger)
        }
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        ledger.stop.store(true, ordering: .relaxed)
        let result = await task.value
        progress.cancel()
        endProgress()
        return result
    }

    func gitRoundTrip(
        _ cluster: ProcessCluster, _ client: RaftClient, root: String
    ) async throws -> (
        push: Double, clone: Double, commits: Int, problem: String?
    ) {
        // A small project with history, built with git.
        let source = root + "/project"
        try FileManager.default.createDirectory(atPath: source + "/src", withIntermediateDirectories: true)
        try ClientGit.check(["init", "-q", "-b", "main", "."], in: source)
        let commits = 40
        for n in 0..<commits {
            let text = (0..<(20 + n)).map { "line \($0) of revision \(n)" }.joined(separator: "\n") + "\n"
            try Data(text.utf8).write(to: URL(fileURLWithPath: source + "/src/module\(n % 7).txt"))
            try Data("# demo project\n\nrevision \(n)\n".utf8).write(to: URL(fileURLWithPath: source + "/README.md"))
            try ClientGit.check(["add", "-A"], in: source)
            try ClientGit.check(["commit", "-q", "-m", "revision \(n)"], in: source)
        }
        let head = try ClientGit.check(["rev-parse", "HEAD"], in: source)
        let path = "demo/project.git"
        try await client.createRepositoryRetrying(path)
        // Every node serves it once it applied the creation (a follower answers 404 before).
        var partition = Raftd_V1_GetPartitionResponse()
        for endpoint in cluster.endpoints {
            let deadline = ContinuousClock.now + .seconds(15)
            while true {
                do {
                    partition = try await client.partition(relativePath: path, at: endpoint)
                    break
                } catch let error as RaftClientError where error.code == .notFound && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        if partition.leaderAddress.isEmpty { partition = try await client.partition(relativePath: path) }
        let leader = cluster.endpoints.firstIndex(of: partition.leaderAddress) ?? 0
        let follower = (leader + 1) % 3
        let other = (leader + 2) % 3
        let credentials = "demo:\(cluster.token.trimmingCharacters(in: .whitespacesAndNewlines))@"
        var t0 = ContinuousClock.now
        let pushed = try ClientGit.run(
            ["push", "-q", "http://\(credentials)\(cluster.gitEndpoints[follower])/\(path)", "main"], in: source,
            timeout: 120)
        let push = (ContinuousClock.now - t0).seconds
        guard pushed.ok else {
            return (
                push, 0, commits, "git push to node \(follower + 1) (a follower) failed: \(pushed.errors.suffix(400))"
            )
        }
        say(
            "git: pushed \(commits) commits to node \(follower + 1) (a follower; node \(leader + 1) leads the partition) in \(Self.ms(push)) ms"
        )
        t0 = ContinuousClock.now
        let clone = root + "/clone"
        let cloned = try ClientGit.run(
            [
                "-c", "http.extraHeader=Raftd-Consistency: linearizable", "clone", "-q",
                "http://\(credentials)\(cluster.gitEndpoints[other])/\(path)", clone,
            ], in: root, timeout: 120)
        let cloneTime = (ContinuousClock.now - t0).seconds
        guard cloned.ok else {
            return (push, cloneTime, commits, "git clone from node \(other + 1) failed: \(cloned.errors.suffix(400))")
        }
        let fsck = try ClientGit.run(["fsck", "--full", "--strict"], in: clone)
        let cloneHead = try ClientGit.check(["rev-parse", "HEAD"], in: clone)
        let count = try ClientGit.check(["rev-list", "--count", "HEAD"], in: clone)
        say(
            "git: cloned it from node \(other + 1) in \(Self.ms(cloneTime)) ms: \(count) commits, HEAD \(cloneHead.prefix(12)) (\(cloneHead == head ? "the one pushed" : "NOT the one pushed")), git fsck \(fsck.ok ? "clean" : "FAILED")"
        )
        if !fsck.ok { return (push, cloneTime, commits, "git fsck of the clone failed: \(fsck.errors.suffix(400))") }
        if cloneHead != head || count != "\(commits)" {
            return (
                push, cloneTime, commits, "the clone's HEAD \(cloneHead) (\(count) commits) is not the pushed \(head)"
            )
        }
        return (push, cloneTime, commits, nil)
    }

    /// The node (0-based) leading each partition, as node 1 sees it (-1: none known).
    func leaderMap(_ cluster: ProcessCluster, _ client: RaftClient, _ paths: [String]) async throws -> [Int] {
        let map = Mutex<[Int]>(Array(repeating: -1, count: paths.count))
        try await concurrently(paths.count) { n in
            let shown = try await client.partition(relativePath: paths[n], at: cluster.endpoints[0])
            let node = cluster.endpoints.firstIndex(of: shown.leaderAddress) ?? -1
            map.withLock { $0[n] = node }
        }
        return map.withLock { $0 }
    }

    /// Waits until every orphaned partition has a leader on a live node. Returns the time
    /// since `since` at which polling saw the last of them, and the time of the last win
    /// by the new leaders' own clocks (each reports how long it has led).
    func waitReLed(
        _ cluster: ProcessCluster, _ client: RaftClient, _ paths: [String], _ orphaned: [Int], victim: Int,
        since: ContinuousClock.Instant
    ) async throws -> (Double, Double) {
        let pending = Mutex<Set<Int>>(Set(orphaned))
        let lastWin = Mutex<ContinuousClock.Instant>(since)
        let survivors = (0..<3).filter { $0 != victim }.map { cluster.endpoints[$0] }
        let victimAddress = cluster.endpoints[victim]
        while ContinuousClock.now - since < .seconds(60) {
            let round = pending.withLock { Array($0) }
            if round.isEmpty { break }
            try? await concurrently(round.count) { k in
                let n = round[k]
                guard let shown = try? await client.partition(relativePath: paths[n], at: survivors[n % 2]),
                    !shown.leaderAddress.isEmpty, shown.leaderAddress != victimAddress,
                    let fromLeader = try? await client.partition(relativePath: paths[n], at: shown.leaderAddress),
                    fromLeader.leaderAddress == shown.leaderAddress
                else { return }
                let won = ContinuousClock.now - .milliseconds(fromLeader.leaderForMs)
                lastWin.withLock { $0 = max($0, won) }
                pending.withLock { _ = $0.remove(n) }
            }
            if pending.withLock({ $0.isEmpty }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let left = pending.withLock { $0.count }
        guard left == 0 else { throw LoadError("\(left) partitions had no leader on a live node 60 s after the kill") }
        return ((ContinuousClock.now - since).seconds, (lastWin.withLock { $0 } - since).seconds)
    }

    /// Waits until `node` has applied each partition up to its target LSN.
    func waitCaughtUp(
        _ cluster: ProcessCluster, _ client: RaftClient, _ paths: [String], node: Int, targets: [UInt64]
    ) async throws {
        let pending = Mutex<Set<Int>>(Set(paths.indices))
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(60) {
            let round = pending.withLock { Array($0) }
            if round.isEmpty { return }
            try? await concurrently(round.count) { k in
                let n = round[k]
                guard let shown = try? await client.partition(relativePath: paths[n], at: cluster.endpoints[node]),
                    shown.appliedLsn >= targets[n]
                else { return }
                pending.withLock { _ = $0.remove(n) }
            }
            progress(
                "  catching up: node \(node + 1) applied \(paths.count - pending.withLock { $0.count })/\(paths.count) partitions"
            )
            if pending.withLock({ $0.isEmpty }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        endProgress()
        let left = pending.withLock { $0.count }
        guard left == 0 else { throw LoadError("node \(node + 1) had not caught up on \(left) partitions after 60 s") }
    }

    /// Reads every partition on every node at the LSN of its last acknowledged write and
    /// looks for every acknowledged reference at its object ID.
    func checkReplicas(
        _ cluster: ProcessCluster, _ client: RaftClient, _ paths: [String], acks: [DemoAck], lsns: [UInt64]
    ) async throws -> [String] {
        var expected = Array(repeating: [(String, String)](), count: paths.count)
        for ack in acks { expected[ack.partition].append((ack.reference, ack.oid)) }
        let frozen = expected
        let problems = Mutex<[String]>([])
        let done = Atomic<Int>(0)
        let progress = progressTask { "  checked \(done.load(ordering: .relaxed))/\(paths.count * 3) replicas" }
        try await concurrently(paths.count * 3, width: 48) { k in
            let n = k / 3
            let node = k % 3
            var read = Raftd_V1_ListRefsRequest()
            read.repository.relativePath = paths[n]
            read.consistency = .staleAtLsn
            read.minLsn = lsns[n]
            var answer: Raftd_V1_ListRefsResponse?
            let deadline = ContinuousClock.now + .seconds(60)
            while answer == nil && ContinuousClock.now < deadline {
                answer = try? await client.listRefs(at: cluster.endpoints[node], read)
                if answer == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            defer { done.add(1, ordering: .relaxed) }
            guard let answer else {
                problems.withLock {
                    $0.append("node \(node + 1) did not serve \(paths[n]) at LSN \(lsns[n]) within 60 s")
                }
                return
            }
            var refs: [String: String] = [:]
            for reference in answer.references { refs[reference.name] = reference.oid }
            for (name, oid) in frozen[n] where refs[name] != oid {
                problems.withLock {
                    $0.append(
                        "node \(node + 1) \(paths[n]): acknowledged \(name) at \(oid.prefix(12)) reads \(refs[name]?.prefix(12) ?? "missing")"
                    )
                }
            }
        }
        progress.cancel()
        endProgress()
        return problems.withLock { $0 }
    }
}

import Foundation
import RaftClient
import RaftEngine
import RaftTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What a git command did: its exit status, standard output and standard error.
struct GitRun {
    var status: Int32
    var output: String
    var errors: String
    var ok: Bool { status == 0 }
}

/// Runs `/usr/bin/git` with no user or system configuration, output to files (no pipe
/// deadlock), killed after `timeout` seconds.
@discardableResult
func runGit(_ arguments: [String], in directory: String, timeout: Double = 300) throws -> GitRun {
    let scratch = try TemporaryDirectory("raftd-git-run")
    defer { scratch.remove() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    var environment = ProcessInfo.processInfo.environment
    environment["GIT_CONFIG_NOSYSTEM"] = "1"
    environment["GIT_CONFIG_GLOBAL"] = "/dev/null"
    environment["GIT_TERMINAL_PROMPT"] = "0"
    environment["GIT_AUTHOR_NAME"] = "raftd test"
    environment["GIT_AUTHOR_EMAIL"] = "test@raftd"
    environment["GIT_COMMITTER_NAME"] = "raftd test"
    environment["GIT_COMMITTER_EMAIL"] = "test@raftd"
    process.environment = environment
    FileManager.default.createFile(atPath: scratch.path + "/out", contents: nil)
    FileManager.default.createFile(atPath: scratch.path + "/err", contents: nil)
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch.path + "/out"))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch.path + "/err"))
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(5_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw DaemonTestError("git \(arguments.joined(separator: " ")) still ran after \(timeout) s")
    }
    process.waitUntilExit()
    try out.close()
    try err.close()
    let output = String(decoding: FileManager.default.contents(atPath: scratch.path + "/out") ?? Data(), as: UTF8.self)
    let errors = String(decoding: FileManager.default.contents(atPath: scratch.path + "/err") ?? Data(), as: UTF8.self)
    return GitRun(
        status: process.terminationStatus, output: output.trimmingCharacters(in: .whitespacesAndNewlines),
        errors: errors)
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
func httpRequest(
    _ endpoint: String, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = []
) throws -> (status: Int, body: [UInt8]) {
    let port = Int(endpoint.split(separator: ":").last!)!
    let socket = try TCPSocket(port: port)
    var head = "\(method) \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if method == "POST" { head += "Content-Length: \(body.count)\r\n" }
    socket.send(Array((head + "\r\n").utf8) + body)
    let answer = socket.readAll()
    let text = String(decoding: answer.prefix(200), as: UTF8.self)
    let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
    guard let split = answer.firstRange(of: Array("\r\n\r\n".utf8)) else { return (status, []) }
    var content = Array(answer[split.upperBound...])
    if String(decoding: answer[..<split.lowerBound], as: UTF8.self).lowercased().contains("transfer-encoding: chunked")
    {
        content = dechunk(content)
    }
    return (status, content)
}

private func dechunk(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        guard let end = bytes[i...].firstRange(of: Array("\r\n".utf8)) else { break }
        let size = Int(String(decoding: bytes[i..<end.lowerBound], as: UTF8.self), radix: 16) ?? 0
        if size == 0 { break }
        out += bytes[end.upperBound..<min(bytes.count, end.upperBound + size)]
        i = end.upperBound + size + 2
    }
    return out
}

/// The Location header of a GET (a redirect), with the cluster's token from `token`.
func rawLocation(_ endpoint: String, _ path: String, token: String) throws -> String {
    let port = Int(endpoint.split(separator: ":").last!)!
    let socket = try TCPSocket(port: port)
    socket.send(
        Array(
            "GET \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n"
                .utf8))
    let text = String(decoding: socket.readAll(), as: UTF8.self)
    for line in text.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("location:") {
        return String(line.dropFirst("location:".count)).trimmingCharacters(in: .whitespaces)
    }
    throw DaemonTestError("no Location in: \(text.prefix(300))")
}

func pktLine(_ text: String) -> [UInt8] {
    let hex = String(text.utf8.count + 4, radix: 16)
    return Array((String(repeating: "0", count: 4 - hex.count) + hex + text).utf8)
}

/// Git over HTTP against three `raftd serve` processes, with Debian's git as the client.
@Suite("Git over HTTP: three raftd processes and real git", .serialized)
struct GitHTTPTests {
    static let zero = String(repeating: "0", count: 40)

    /// A cluster with one repository created; the index of a node that does not lead it.
    static func cluster(_ paths: [String]) async throws -> (ProcessCluster, RaftClient) {
        let cluster = try ProcessCluster(binary: raftdBinary())
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client()
        for path in paths { try await create(client, path) }
        return (cluster, client)
    }

    /// Creates a repository (or a pool, with `pool: true`). A creation whose outcome is
    /// unknown (a connection that failed under load) is retried: it commits into the same
    /// partition or finds ALREADY_EXISTS, as in the daemon suite.
    static func create(_ client: RaftClient, _ path: String, objectPool: String = "", pool: Bool = false) async throws {
        for attempt in 1...5 {
            do {
                if pool {
                    _ = try await client.createObjectPool(path)
                } else {
                    _ = try await client.createRepository(path, objectPool: objectPool)
                }
                return
            } catch let error as RaftClientError where error.code == .alreadyExists && attempt > 1 {
                return
            } catch let error as RaftClientError where error.code == .unknownOutcome && attempt < 5 {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    static func leader(_ cluster: ProcessCluster, _ client: RaftClient, _ path: String) async throws -> Int {
        var found: Int? = nil
        try await eventually("\(path) has a leader", within: 30) {
            let show = try await client.partition(relativePath: path)
            found = cluster.endpoints.firstIndex(of: show.leaderAddress)
            return found != nil
        }
        return found!
    }

    static func url(_ cluster: ProcessCluster, _ node: Int, _ path: String) -> String {
        "http://\(cluster.gitEndpoints[node])/\(path)"
    }

    static func token(_ cluster: ProcessCluster) -> String {
        cluster.token.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// git's options that present the cluster's token (and skip git's delta search on
    /// blobs over 1 MiB: the large pushes are random bytes, and the client's search for
    /// deltas among them would take longer than the whole push).
    static func auth(_ cluster: ProcessCluster) -> [String] {
        ["-c", "http.extraHeader=Authorization: Bearer \(token(cluster))", "-c", "core.bigFileThreshold=1m"]
    }

    /// A repository with history: `commits` commits on main, a topic branch every 50
    /// merged back, annotated and lightweight tags (git fast-import).
    static func makeHistory(_ directory: String, commits: Int) throws {
        try runGit(["init", "-q", "-b", "main", directory], in: "/")
        var stream = ""
        var mark = 0
        var mainTip = 0
        func commit(_ branch: String, _ n: Int, from: Int?, merge: Int? = nil) -> Int {
            mark += 1
            let message = "commit \(n) on \(branch)\n"
            stream += "commit refs/heads/\(branch)\nmark :\(mark)\n"
            stream += "committer raftd test <test@raftd> \(1_700_000_000 + n) +0000\n"
            stream += "data \(message.utf8.count)\n\(message)"
            if let from { stream += "from :\(from)\n" }
            if let merge { stream += "merge :\(merge)\n" }
            let content = "line \(n) of \(branch)\n" + String(repeating: "x", count: n % 97) + "\n"
            stream += "M 644 inline \(branch)/file\(n % 23).txt\ndata \(content.utf8.count)\n\(content)\n"
            return mark
        }
        for n in 0..<commits {
            mainTip = commit("main", n, from: n == 0 ? nil : mainTip)
            if n % 50 == 49 {
                let topic = "topic-\(n / 50)"
                var tip = commit(topic, n * 10, from: mainTip)
                tip = commit(topic, n * 10 + 1, from: tip)
                tip = commit(topic, n * 10 + 2, from: tip)
                mainTip = commit("main", n * 10 + 3, from: mainTip, merge: tip)
            }
            if n % 100 == 99 {
                let message = "release \(n / 100)\n"
                stream +=
                    "tag v\(n / 100)\nfrom :\(mainTip)\ntagger raftd test <test@raftd> \(1_700_000_000 + n) +0000\n"
                stream += "data \(message.utf8.count)\n\(message)\n"
                stream += "reset refs/tags/light-\(n / 100)\nfrom :\(mainTip)\n\n"
            }
        }
        let file = directory + "/.fast-import"
        try stream.write(toFile: file, atomically: true, encoding: .utf8)
        // fast-import reads its standard input: the file.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = ["-C", directory, "fast-import", "--quiet"]
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw DaemonTestError("git fast-import failed") }
        try FileManager.default.removeItem(atPath: file)
        try runGit(["-C", directory, "checkout", "-q", "main"], in: "/")
    }

    /// `git for-each-ref` of a repository directory.
    static func refs(_ directory: String) throws -> String {
        try runGit(["-C", directory, "for-each-ref", "--format=%(objectname) %(objecttype) %(refname)"], in: "/")
            .output
    }

    @Test(
        "Git: a push of history to a follower reaches all three replicas; clones from each node agree and pass fsck; incremental pushes; atomic and concurrent conflicts",
        .timeLimit(.minutes(6)))
    func pushCloneAndConflicts() async throws {
        let path = "@hashed/ab/cd/history.git"
        let (cluster, client) = try await Self.cluster([path])
        defer {
            client.close()
            cluster.stopAll()
        }
        let work = try TemporaryDirectory("raftd-git-work")
        defer { work.remove() }
        let source = work.path + "/source"
        try Self.makeHistory(source, commits: 300)
        let count = try runGit(["-C", source, "rev-list", "--all", "--count"], in: "/").output
        #expect(Int(count) ?? 0 >= 300)

        let leader = try await Self.leader(cluster, client, path)
        let follower = (leader + 1) % 3
        let auth = Self.auth(cluster)
        let push = try runGit(
            auth + [
                "-C", source, "push", Self.url(cluster, follower, path), "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ], in: "/")
        #expect(push.ok, "push to the follower: \(push.errors)")
        let expected = try Self.refs(source)

        // Clones from each node: identical references, fsck clean.
        for node in 0..<3 {
            let clone = work.path + "/clone\(node)"
            let run = try runGit(auth + ["clone", "-q", "--mirror", Self.url(cluster, node, path), clone], in: "/")
            #expect(run.ok, "clone from node \(node): \(run.errors)")
            #expect(try Self.refs(clone) == expected, "node \(node)")
            let fsck = try runGit(["-C", clone, "fsck", "--full"], in: "/")
            #expect(fsck.ok, "fsck of the clone from node \(node): \(fsck.errors)")
        }
        // Protocol version 0 as well (the default above is version 2).
        let v0 = try runGit(
            auth + [
                "-c", "protocol.version=0", "clone", "-q", "--mirror", Self.url(cluster, follower, path),
                work.path + "/v0",
            ],
            in: "/")
        #expect(v0.ok, "protocol v0 clone: \(v0.errors)")
        // Every replica's own directory.
        for node in 0..<3 {
            let directory = cluster.storagePath(node) + "/" + path
            try await eventually("node \(node) applied the push", within: 30) { try Self.refs(directory) == expected }
            let fsck = try runGit(["-C", directory, "fsck", "--full"], in: "/")
            #expect(fsck.ok, "fsck of node \(node)'s replica: \(fsck.errors)")
        }

        // Incremental pushes through a working clone.
        let clone = work.path + "/working"
        try runGit(auth + ["clone", "-q", Self.url(cluster, follower, path), clone], in: "/")
        func commitFile(_ name: String) throws {
            try "\(name)\n".write(toFile: clone + "/" + name, atomically: true, encoding: .utf8)
            try runGit(["-C", clone, "add", name], in: "/")
            try runGit(["-C", clone, "commit", "-q", "-m", name], in: "/")
        }
        let origin = ["-C", clone, "push", "origin"]
        try commitFile("ff")
        #expect(try runGit(auth + origin + ["main"], in: "/").ok, "fast-forward")
        try runGit(["-C", clone, "reset", "-q", "--hard", "HEAD~2"], in: "/")
        try commitFile("rewrite")
        let nonFF = try runGit(auth + origin + ["main"], in: "/")
        #expect(!nonFF.ok && nonFF.errors.contains("rejected"), "non-fast-forward: \(nonFF.errors)")
        #expect(try runGit(auth + origin + ["--force", "main"], in: "/").ok, "forced")
        #expect(try runGit(auth + origin + [":topic-0"], in: "/").ok, "delete a branch")
        try runGit(["-C", clone, "tag", "-a", "-m", "new", "v-new"], in: "/")
        #expect(try runGit(auth + origin + ["v-new"], in: "/").ok, "a tag")
        let head = try runGit(["-C", clone, "rev-parse", "HEAD"], in: "/").output
        for node in 0..<3 {
            let directory = cluster.storagePath(node) + "/" + path
            try await eventually("node \(node) has the incremental pushes", within: 30) {
                let refs = try Self.refs(directory)
                return refs.contains("\(head) commit refs/heads/main") && !refs.contains("refs/heads/topic-0")
                    && refs.contains("refs/tags/v-new")
            }
        }

        // A push whose expected old value is stale, sent as git would (report-status), at
        // the leader: with `atomic` nothing applies; without it the other reference does.
        let leaderNow = try await Self.leader(cluster, client, path)
        let old = try runGit(["-C", clone, "rev-parse", "HEAD~1"], in: "/").output
        let pack = try gitData(["pack-objects", "--stdout", "-q"], in: clone, input: Data())
        for atomic in [true, false] {
            let branch = atomic ? "refs/heads/atomic-new" : "refs/heads/plain-new"
            var body = pktLine(
                "\(old) \(head) refs/heads/main\0report-status\(atomic ? " atomic" : "") object-format=sha1\n")
            body += pktLine("\(Self.zero) \(head) \(branch)\n")
            body += Array("0000".utf8) + Array(pack)
            let answer = try httpRequest(
                cluster.gitEndpoints[leaderNow], "POST", "/\(path)/git-receive-pack",
                headers: [
                    "Authorization": "Bearer \(Self.token(cluster))",
                    "Content-Type": "application/x-git-receive-pack-request",
                ], body: body)
            let text = String(decoding: answer.body, as: UTF8.self)
            #expect(answer.status == 200, "\(text)")
            #expect(text.contains("ng refs/heads/main stale info"), "atomic=\(atomic): \(text)")
            if atomic {
                #expect(text.contains("ng \(branch) atomic push failed"), "\(text)")
            } else {
                #expect(text.contains("ok \(branch)"), "\(text)")
            }
        }
        try await eventually("plain-new applied everywhere", within: 30) {
            try (0..<3).allSatisfy {
                try Self.refs(cluster.storagePath($0) + "/" + path).contains("refs/heads/plain-new")
            }
        }
        for node in 0..<3 {
            #expect(!(try Self.refs(cluster.storagePath(node) + "/" + path).contains("atomic-new")), "node \(node)")
        }

        // Two clients push conflicting updates to one branch at once: exactly one wins.
        var serverSideConflicts = 0
        for round in 0..<6 {
            let base = try runGit(["-C", clone, "rev-parse", "HEAD"], in: "/").output
            var tips: [String] = []
            var clones: [String] = []
            for side in 0..<2 {
                let other = work.path + "/race\(round)-\(side)"
                try runGit(["clone", "-q", clone, other], in: "/")
                try runGit(["-C", other, "reset", "-q", "--hard", base], in: "/")
                try "\(round)-\(side)\n".write(toFile: other + "/race", atomically: true, encoding: .utf8)
                try runGit(["-C", other, "add", "race"], in: "/")
                try runGit(["-C", other, "commit", "-q", "-m", "race \(round) \(side)"], in: "/")
                tips.append(try runGit(["-C", other, "rev-parse", "HEAD"], in: "/").output)
                clones.append(other)
            }
            let racers = clones
            let results = try await withThrowingTaskGroup(of: (Int, GitRun).self) { group in
                for side in 0..<2 {
                    let node = side == 0 ? follower : leaderNow
                    group.addTask {
                        (
                            side,
                            try runGit(
                                auth + [
                                    "-C", racers[side], "push", Self.url(cluster, node, path), "HEAD:refs/heads/main",
                                ],
                                in: "/")
                        )
                    }
                }
                var out: [Int: GitRun] = [:]
                for try await (side, run) in group { out[side] = run }
                return out
            }
            let winners = results.filter { $0.value.ok }
            #expect(winners.count == 1, "round \(round): \(results.mapValues(\.errors))")
            for (side, run) in results where !run.ok {
                #expect(run.errors.contains("rejected"), "round \(round) side \(side): \(run.errors)")
                if run.errors.contains("someone pushed first") { serverSideConflicts += 1 }
            }
            guard let winner = winners.first?.key else { continue }
            let directory = cluster.storagePath(leaderNow) + "/" + path
            try await eventually("the winner's commit is main", within: 30) {
                try Self.refs(directory).contains("\(tips[winner]) commit refs/heads/main")
            }
            try runGit(["-C", clone, "fetch", "-q", clones[winner], "HEAD"], in: "/")
            try runGit(["-C", clone, "reset", "-q", "--hard", "FETCH_HEAD"], in: "/")
        }
        // The race reaches the server's verification in some rounds (both clients saw the
        // same old value); it is reported, not required: timing decides it.
        print("concurrent pushes: \(serverSideConflicts) of 6 rounds were decided by the leader's verification")

        // Object pools: a fork linked to a pool pushes (a thin pack whose bases are in the
        // pool) and clones like any repository.
        let pool = "@pools/aa/bb/pool.git"
        let fork = "@hashed/ef/01/fork.git"
        try await Self.create(client, pool, pool: true)
        try await Self.create(client, fork, objectPool: pool)
        #expect(try runGit(auth + ["-C", clone, "push", Self.url(cluster, follower, pool), "main"], in: "/").ok)
        try commitFile("fork-only")
        let forkPush = try runGit(auth + ["-C", clone, "push", Self.url(cluster, follower, fork), "main"], in: "/")
        #expect(forkPush.ok, "push to the fork: \(forkPush.errors)")
        let forkHead = try runGit(["-C", clone, "rev-parse", "HEAD"], in: "/").output
        for node in 0..<3 {
            let directory = cluster.storagePath(node) + "/" + fork
            try await eventually("node \(node) applied the fork's push", within: 30) {
                try Self.refs(directory).contains("\(forkHead) commit refs/heads/main")
            }
            #expect(try runGit(["-C", directory, "fsck", "--full"], in: "/").ok, "fsck of the fork on node \(node)")
            let forkClone = work.path + "/fork\(node)"
            let run = try runGit(auth + ["clone", "-q", Self.url(cluster, node, fork), forkClone], in: "/")
            #expect(run.ok, "clone of the fork from node \(node): \(run.errors)")
            #expect(try runGit(["-C", forkClone, "rev-parse", "HEAD"], in: "/").output == forkHead)
        }

        // Staging directories are gone after the answers.
        for node in 0..<3 {
            let staging = cluster.storagePath(node) + "/+raft/tmp/git"
            let left = (try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? []
            #expect(left.filter { $0.hasPrefix("push-") }.isEmpty, "node \(node): \(left)")
        }
    }
}

extension GitHTTPTests {
    /// Writes `files` files of `size` random bytes and commits them.
    static func commitRandomFiles(_ directory: String, files: Int, size: Int, label: String) throws {
        let random = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
        defer { try? random.close() }
        for i in 0..<files {
            let bytes = try random.read(upToCount: size) ?? Data()
            try bytes.write(to: URL(fileURLWithPath: "\(directory)/\(label)-\(i).bin"))
        }
        try runGit(["-C", directory, "add", "."], in: "/")
        try runGit(["-C", directory, "commit", "-q", "-m", label], in: "/")
    }

    @Test(
        "Git: a 200 MiB push of random blobs succeeds and clones back byte-equal from a follower",
        .timeLimit(.minutes(8)))
    func largePush() async throws {
        let path = "large/blobs.git"
        let (cluster, client) = try await Self.cluster([path])
        defer {
            client.close()
            cluster.stopAll()
        }
        let work = try TemporaryDirectory("raftd-git-large")
        defer { work.remove() }
        let source = work.path + "/source"
        try runGit(["init", "-q", "-b", "main", source], in: "/")
        try Self.commitRandomFiles(source, files: 50, size: 4 << 20, label: "blob")
        let leader = try await Self.leader(cluster, client, path)
        let follower = (leader + 1) % 3
        let started = Date()
        let push = try runGit(
            Self.auth(cluster) + ["-C", source, "push", Self.url(cluster, follower, path), "main"], in: "/",
            timeout: 400)
        if !push.ok { print("200 MiB push failed: \(push.errors)") }
        #expect(push.ok, "200 MiB push: \(push.errors)")
        print("200 MiB push (debug build): \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        let other = (leader + 2) % 3
        let clone = work.path + "/clone"
        // The other follower may not have applied the push yet: ask for a linearizable view
        // (the replica waits for a ReadIndex before it advertises).
        let run = try runGit(
            Self.auth(cluster) + [
                "-c", "http.extraHeader=Raftd-Consistency: linearizable", "clone", "-q", Self.url(cluster, other, path),
                clone,
            ], in: "/", timeout: 400)
        #expect(run.ok, "clone: \(run.errors)")
        for i in 0..<50 {
            let a = FileManager.default.contents(atPath: "\(source)/blob-\(i).bin")
            let b = FileManager.default.contents(atPath: "\(clone)/blob-\(i).bin")
            #expect(a != nil && a == b, "blob-\(i).bin differs")
        }
        // Every replica holds the same pack (git names a pack by its checksum); the clone
        // above already checked its content. (fsck of 200 MiB on each replica would add a
        // quarter of a minute to the suite for nothing the names do not show.)
        var packs: [Set<String>] = []
        for node in 0..<3 {
            let directory = cluster.storagePath(node) + "/" + path
            try await eventually("node \(node) applied the large push", within: 60) {
                try Self.refs(directory).contains("refs/heads/main")
            }
            let names = try FileManager.default.contentsOfDirectory(atPath: directory + "/objects/pack")
            packs.append(Set(names.filter { $0.hasSuffix(".pack") }))
        }
        #expect(!packs[0].isEmpty && packs.allSatisfy { $0 == packs[0] }, "\(packs)")
        let leaderFsck = try runGit(
            ["-C", cluster.storagePath(leader) + "/" + path, "fsck", "--full"], in: "/", timeout: 300)
        #expect(leaderFsck.ok, "fsck on the leader: \(leaderFsck.errors)")
    }

    @Test(
        "Git: kill -9 of the leader during a push leaves all of it or none of it on every survivor; the retry succeeds; leftover staging is removed at start",
        .timeLimit(.minutes(6)))
    func leaderKilledDuringPush() async throws {
        let path = "crash/push.git"
        let (cluster, client) = try await Self.cluster([path])
        defer {
            client.close()
            cluster.stopAll()
        }
        let work = try TemporaryDirectory("raftd-git-crash")
        defer { work.remove() }
        let source = work.path + "/source"
        try runGit(["init", "-q", "-b", "main", source], in: "/")
        try Self.commitRandomFiles(source, files: 8, size: 4 << 20, label: "first")
        let auth = Self.auth(cluster)
        let leader = try await Self.leader(cluster, client, path)
        let follower = (leader + 1) % 3
        #expect(try runGit(auth + ["-C", source, "push", Self.url(cluster, follower, path), "main"], in: "/").ok)
        let before = try runGit(["-C", source, "rev-parse", "HEAD"], in: "/").output
        try Self.commitRandomFiles(source, files: 8, size: 4 << 20, label: "second")
        try runGit(["-C", source, "branch", "side"], in: "/")
        let after = try runGit(["-C", source, "rev-parse", "HEAD"], in: "/").output

        // Push two references to the leader and kill it while the push is on its way.
        let leaderURL = Self.url(cluster, leader, path)
        let pushTask = Task.detached {
            try runGit(auth + ["-C", source, "push", leaderURL, "main", "side"], in: "/", timeout: 120)
        }
        // Once the leader has the request (its spooled body or staging directory exists), at
        // a random point of serving it: receiving, git indexing, replicating, committing.
        let staging = cluster.storagePath(leader) + "/+raft/tmp/git"
        try await eventually("the leader receives the push", within: 60) {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? []
            return entries.contains { $0.hasPrefix("body-") || $0.hasPrefix("push-") }
        }
        let delay = Int.random(in: 0...1_500)
        try await Task.sleep(for: .milliseconds(delay))
        cluster.crash(leader)
        print("killed the leader \(delay) ms after the push reached it")
        let outcome = try await pushTask.value
        print("push during kill -9: \(outcome.ok ? "acknowledged" : "failed: \(outcome.errors.suffix(300))")")

        let survivors = (0..<3).filter { $0 != leader }
        func state(_ node: Int) throws -> (main: String?, side: String?) {
            let refs = try Self.refs(cluster.storagePath(node) + "/" + path)
            func value(_ name: String) -> String? {
                refs.split(separator: "\n").first { $0.hasSuffix(" " + name) }.map { String($0.prefix(40)) }
            }
            return (value("refs/heads/main"), value("refs/heads/side"))
        }
        if outcome.ok {
            for node in survivors {
                try await eventually("survivor \(node) has the acknowledged push", within: 30) {
                    let s = try state(node)
                    return s.main == after && s.side == after
                }
            }
        }
        // Whatever git saw, no survivor holds half of it: both references moved or neither.
        for node in survivors {
            let s = try state(node)
            #expect(
                (s.main == before && s.side == nil) || (s.main == after && s.side == after),
                "node \(node): main \(s.main ?? "-"), side \(s.side ?? "-")")
            #expect(try runGit(["-C", cluster.storagePath(node) + "/" + path, "fsck", "--full"], in: "/").ok)
        }

        // The retry through a survivor succeeds once a new leader is elected.
        var retried = false
        for _ in 0..<40 where !retried {
            let run = try runGit(
                auth + ["-C", source, "push", Self.url(cluster, survivors[0], path), "main", "side"], in: "/",
                timeout: 120)
            retried = run.ok
            if !retried { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(retried, "the retried push succeeded")
        for node in survivors {
            try await eventually("survivor \(node) has the retried push", within: 30) {
                let s = try state(node)
                return s.main == after && s.side == after
            }
        }

        // A staging directory left by a crash is removed when the node starts again.
        let leftover = cluster.storagePath(leader) + "/+raft/tmp/git/push-999"
        try FileManager.default.createDirectory(atPath: leftover + "/objects", withIntermediateDirectories: true)
        try cluster.start(leader)
        try await cluster.waitReady(leader)
        #expect(!FileManager.default.fileExists(atPath: leftover), "leftover staging removed at start")
        try await eventually("the restarted node caught up", within: 60) {
            let s = try state(leader)
            return s.main == after && s.side == after
        }
    }

    @Test("Git: refusals get clear HTTP errors and change nothing; the node keeps serving", .timeLimit(.minutes(3)))
    func refusals() async throws {
        let path = "refuse/me.git"
        let (cluster, client) = try await Self.cluster([path])
        defer {
            client.close()
            cluster.stopAll()
        }
        let node = try await Self.leader(cluster, client, path)
        let endpoint = cluster.gitEndpoints[node]
        let auth = ["Authorization": "Bearer \(Self.token(cluster))"]
        let advertise = "/\(path)/info/refs?service=git-upload-pack"

        // A wrong token, or none: 401 asking for Basic credentials.
        let wrong = try httpRequest(endpoint, "GET", advertise, headers: ["Authorization": "Bearer not-the-token"])
        #expect(wrong.status == 401)
        #expect(String(decoding: wrong.body, as: UTF8.self).contains("authentication required"))
        let basicWrong = try httpRequest(
            endpoint, "GET", advertise, headers: ["Authorization": "Basic " + Data("u:nope".utf8).base64EncodedString()]
        )
        #expect(basicWrong.status == 401)
        #expect(try httpRequest(endpoint, "GET", advertise).status == 401)
        let basic = try httpRequest(
            endpoint, "GET", advertise,
            headers: ["Authorization": "Basic " + Data("anyone:\(Self.token(cluster))".utf8).base64EncodedString()])
        #expect(basic.status == 200)
        // A path with '..', an absolute-looking one, the reserved directory.
        for bad in ["/refuse/../etc/info/refs", "//etc/passwd/info/refs", "/+raft/wal/info/refs"] {
            let answer = try httpRequest(endpoint, "GET", bad + "?service=git-upload-pack", headers: auth)
            #expect(answer.status == 400, "\(bad): \(answer.status)")
        }
        // A repository that does not exist: 404 with a hint.
        let missing = try httpRequest(endpoint, "GET", "/no/such.git/info/refs?service=git-upload-pack", headers: auth)
        #expect(missing.status == 404)
        #expect(String(decoding: missing.body, as: UTF8.self).contains("raftd repo create"))
        // A repository of another node's storage.
        let otherStorage = "s\((node + 1) % 3 + 1)"
        let foreign = try httpRequest(
            endpoint, "GET", advertise, headers: auth.merging(["Raftd-Storage": otherStorage]) { $1 })
        #expect(foreign.status == 404)
        #expect(String(decoding: foreign.body, as: UTF8.self).contains("not on this node"), "\(foreign)")
        // Garbage bodies: 400 from both services, nothing changed.
        let refsBefore = try Self.refs(cluster.storagePath(node) + "/" + path)
        for service in ["git-upload-pack", "git-receive-pack"] {
            let answer = try httpRequest(
                endpoint, "POST", "/\(path)/\(service)", headers: auth, body: Array("garbage, not pkt-lines\n".utf8))
            #expect(
                answer.status == 400, "\(service): \(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
        }
        // A damaged gzip body.
        let gzip = try httpRequest(
            endpoint, "POST", "/\(path)/git-upload-pack", headers: auth.merging(["Content-Encoding": "gzip"]) { $1 },
            body: [0x1F, 0x8B, 8, 0, 1, 2, 3, 4])
        #expect(gzip.status == 400)
        // The dumb protocol and unknown URLs.
        #expect(try httpRequest(endpoint, "GET", "/\(path)/info/refs", headers: auth).status == 403)
        #expect(try httpRequest(endpoint, "GET", "/\(path)/HEAD", headers: auth).status == 404)
        #expect(try Self.refs(cluster.storagePath(node) + "/" + path) == refsBefore)

        // A path git would split (':'): refused before git sees it.
        try await Self.create(client, "refuse/a:b.git")
        let colon = try httpRequest(
            endpoint, "GET", "/refuse/a:b.git/info/refs?service=git-receive-pack", headers: auth)
        #expect(colon.status == 400 || colon.status == 307, "\(colon.status)")
        if colon.status == 400 { #expect(String(decoding: colon.body, as: UTF8.self).contains("':'")) }

        // Push tickets: a follower's redirect carries one, good for pushes to that
        // repository only.
        let follower = (node + 1) % 3
        let location = try rawLocation(
            cluster.gitEndpoints[follower], "/\(path)/info/refs?service=git-receive-pack", token: Self.token(cluster))
        let start = try #require(location.range(of: "/+push/"), "a ticket in \(location)")
        // "/+push/<expiry>/<mac>"
        let ticketPrefix = location[start.lowerBound...].split(separator: "/", maxSplits: 3).prefix(3)
            .reduce("") { $0 + "/" + $1 }
        // Valid for this repository's pushes, without a token.
        #expect(
            try httpRequest(endpoint, "GET", "\(ticketPrefix)/\(path)/info/refs?service=git-receive-pack").status == 200
        )
        // Not for fetches, another repository, or a forged MAC.
        #expect(
            try httpRequest(endpoint, "GET", "\(ticketPrefix)/\(path)/info/refs?service=git-upload-pack").status == 401)
        #expect(
            try httpRequest(endpoint, "GET", "\(ticketPrefix)/refuse/a:b.git/info/refs?service=git-receive-pack").status
                == 401)
        let forged = ticketPrefix.dropLast(4) + "0000"
        #expect(try httpRequest(endpoint, "GET", "\(forged)/\(path)/info/refs?service=git-receive-pack").status == 401)
        #expect(
            try httpRequest(endpoint, "GET", "/+push/1/00/\(path)/info/refs?service=git-receive-pack").status == 401)

        // Still serving: a push and a clone.
        let work = try TemporaryDirectory("raftd-git-refusals")
        defer { work.remove() }
        let source = work.path + "/source"
        try runGit(["init", "-q", "-b", "main", source], in: "/")
        try "a\n".write(toFile: source + "/a", atomically: true, encoding: .utf8)
        try runGit(["-C", source, "add", "a"], in: "/")
        try runGit(["-C", source, "commit", "-q", "-m", "a"], in: "/")
        #expect(
            try runGit(Self.auth(cluster) + ["-C", source, "push", Self.url(cluster, node, path), "main"], in: "/").ok)
        let clone = try runGit(
            Self.auth(cluster) + ["clone", "-q", Self.url(cluster, node, path), work.path + "/c"], in: "/")
        #expect(clone.ok, "\(clone.errors)")
        // git's own client: a wrong token is refused with the server's message.
        let refused = try runGit(
            [
                "-c", "http.extraHeader=Authorization: Bearer wrong-token-wrong", "clone", "-q",
                Self.url(cluster, node, path), work.path + "/d",
            ],
            in: "/")
        #expect(
            !refused.ok
                && (refused.errors.contains("Authentication failed")
                    || refused.errors.contains("could not read Username")),
            "\(refused.errors)")
        // A push to a repository that does not exist: 404 with the hint, printed by git.
        let nowhere = try runGit(
            Self.auth(cluster) + ["-C", source, "push", Self.url(cluster, node, "no/where.git"), "main"], in: "/")
        #expect(!nowhere.ok && nowhere.errors.contains("raftd repo create"), "\(nowhere.errors)")
    }
}

import Foundation
import RaftClient
import RaftEngine
import RaftTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The Git suite's large push, kill -9 and refusal tests (the suite is in GitHTTPTests.swift).
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
        // repository only (a fetch ticket, from a node without a replica, has its own label).
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

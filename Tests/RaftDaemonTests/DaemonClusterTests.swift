import Foundation
import RaftAPI
import RaftClient
import RaftEngine
import RaftTesting
import RaftTransport
import Synchronization
import Testing

/// One repository's branch, moved along the commit chain by compare-and-set.
final class Branch: @unchecked Sendable {
    let path: String
    /// Index in the chain of the last acknowledged value (-1: none yet).
    var position = -1
    var lastLSN: UInt64 = 0

    init(path: String) { self.path = path }
}

@Suite("Daemon: three raftd processes", .serialized)
struct DaemonClusterTests {
    static let zero = String(repeating: "0", count: 40)

    /// Moves `branch` one commit forward (the first update brings the pack). An outcome
    /// the client cannot know (the leader died with the write in flight) is settled by a
    /// linearizable read: the CAS either committed or not.
    static func advance(_ branch: Branch, _ chain: CommitChain, _ client: RaftClient) async throws {
        let next = branch.position + 1
        var request = Raftd_V1_UpdateReferencesRequest()
        request.repository.relativePath = branch.path
        var update = Raftd_V1_ReferenceUpdate()
        update.reference = "refs/heads/main"
        update.oldOid = branch.position < 0 ? zero : chain.commits[branch.position]
        update.newOid = chain.commits[next]
        request.updates = [update]
        if branch.position < 0 { request.pack = chain.pack }
        for _ in 0..<20 {
            do {
                branch.lastLSN = try await client.updateReferences(request)
                branch.position = next
                return
            } catch let error as RaftClientError where error.code == .unknownOutcome || error.code == .unavailable {
                try await Task.sleep(for: .milliseconds(100))
                var read = Raftd_V1_ListRefsRequest()
                read.repository.relativePath = branch.path
                guard let refs = try? await client.listRefs(read) else { continue }
                let value = refs.references.first { $0.name == "refs/heads/main" }?.oid
                if value == chain.commits[next] {
                    branch.lastLSN = refs.lsn
                    branch.position = next
                    return
                }
            }
        }
        throw DaemonTestError("\(branch.path): no outcome for the update to commit \(next)")
    }

    static func advanceAll(_ branches: [Branch], _ chain: CommitChain, _ client: RaftClient, times: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for branch in branches {
                group.addTask {
                    for _ in 0..<times { try await advance(branch, chain, client) }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Every branch reads its last acknowledged value on `endpoint` at its LSN.
    static func checkReplica(
        _ endpoint: String, _ branches: [Branch], _ chain: CommitChain, _ client: RaftClient
    )
        async throws
    {
        for branch in branches {
            var read = Raftd_V1_ListRefsRequest()
            read.repository.relativePath = branch.path
            read.consistency = .staleAtLsn
            read.minLsn = branch.lastLSN
            var answer: Raftd_V1_ListRefsResponse?
            try await eventually("\(endpoint) applied \(branch.path) to LSN \(branch.lastLSN)", within: 60) {
                answer = try await client.listRefs(at: endpoint, read)
                return true
            }
            let value = answer?.references.first { $0.name == "refs/heads/main" }?.oid
            #expect(value == chain.commits[branch.position], "\(endpoint) \(branch.path)")
        }
    }

    /// The node (index) leading each repository's partition, as the cluster reports it.
    static func leaders(
        _ cluster: ProcessCluster, _ branches: [Branch], _ client: RaftClient, via endpoint: String
    )
        async -> [String: (node: Int, term: UInt64)]
    {
        // All partitions at once: a round costs one round trip, not a hundred.
        await withTaskGroup(of: (String, Int, UInt64)?.self) { group in
            for branch in branches {
                group.addTask {
                    guard let show = try? await client.partition(relativePath: branch.path, at: endpoint),
                        let node = cluster.endpoints.firstIndex(of: show.leaderAddress)
                    else { return nil }
                    return (branch.path, node, show.term)
                }
            }
            var out: [String: (node: Int, term: UInt64)] = [:]
            for await entry in group {
                if let (path, node, term) = entry { out[path] = (node, term) }
            }
            return out
        }
    }

    @Test(
        "Daemon: 100 partitions over 3 processes: CAS writes, reads at every consistency; kill -9 of the busiest leader loses nothing; the node catches up without elections; routing and refusals"
    )
    func killLeaderLosesNothing() async throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary)
        defer { cluster.stopAll() }
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client()
        defer { client.close() }
        let chain = try CommitChain(length: 24, directory: cluster.directory + "/chain")

        // Repositories, each in its own partition, minted on every node in turn.
        let branches = (0..<100).map { Branch(path: "group/repo-\($0).git") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (n, branch) in branches.enumerated() {
                group.addTask {
                    let creator = try cluster.client(endpoints: [cluster.endpoints[n % 3]])
                    defer { creator.close() }
                    // A creation whose outcome is unknown (leadership moved under load) is
                    // retried: it commits into the same partition or finds ALREADY_EXISTS.
                    for attempt in 1...5 {
                        do {
                            _ = try await creator.createRepository(branch.path)
                            return
                        } catch let error as RaftClientError where error.code == .alreadyExists && attempt > 1 {
                            return
                        } catch let error as RaftClientError where error.code == .unknownOutcome && attempt < 5 {
                            continue
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        try await Self.advanceAll(branches, chain, client, times: 3)
        print("daemon test: 100 repositories created and 300 CAS updates acknowledged")

        // Reads at every consistency level agree with the last acknowledged write.
        for branch in branches.prefix(10) {
            for consistency in [Raftd_V1_Consistency.linearizable, .lease] {
                var read = Raftd_V1_ListRefsRequest()
                read.repository.relativePath = branch.path
                read.consistency = consistency
                let refs = try await client.listRefs(read)
                #expect(refs.references.first?.oid == chain.commits[branch.position], "\(consistency)")
                #expect(refs.lsn >= branch.lastLSN)
            }
        }
        for endpoint in cluster.endpoints { try await Self.checkReplica(endpoint, branches, chain, client) }

        // Kill -9 the node leading the most partitions.
        let before = await Self.leaders(cluster, branches, client, via: cluster.endpoints[0])
        #expect(before.count == branches.count, "every partition has a leader")
        var led = [0, 0, 0]
        for (_, leader) in before.values.map({ ($0, $0) }) { led[leader.node] += 1 }
        let victim = led.indices.max { led[$0] < led[$1] }!
        let survivor = (victim + 1) % 3
        let started = ContinuousClock.now
        cluster.crash(victim)
        let survivorClient = try cluster.client(endpoints: [cluster.endpoints[survivor]])
        defer { survivorClient.close() }
        try await eventually("every partition has a leader on a live node", within: 60) {
            let now = await Self.leaders(cluster, branches, survivorClient, via: cluster.endpoints[survivor])
            return now.count == branches.count && now.values.allSatisfy { $0.node != victim }
        }
        let failover = ContinuousClock.now - started
        // Server side: each new leader says how long it has led; the last of them to win
        // bounds the failover without the polling's own delay (at most a round trip over).
        var lastWin = started
        for (path, leader) in before where leader.node == victim {
            let show = try await survivorClient.partition(relativePath: path, at: cluster.endpoints[survivor])
            let answered = ContinuousClock.now
            guard !show.leaderAddress.isEmpty else { continue }
            let fromLeader = try await survivorClient.partition(relativePath: path, at: show.leaderAddress)
            #expect(fromLeader.leaderForMs >= 0, "\(path): the leader reports its leadership's age")
            lastWin = max(lastWin, answered - .milliseconds(fromLeader.leaderForMs))
        }
        let serverFailover = lastWin - started
        print(
            "daemon test: \(led[victim]) partitions lost their leader (node \(victim)); all re-led after \(serverFailover) by the leaders' clocks, \(failover) by polling (election timeout \(cluster.electionTimeout))"
        )
        // A liveness bound, not the speed target (3x the election timeout is measured and
        // recorded in docs/BENCHMARKS.md): nothing but detection and pacing may delay it.
        #expect(serverFailover < cluster.electionTimeout * 10, "failover took \(serverFailover)")

        // Writes go on with the node down, then it restarts and catches up.
        try await Self.advanceAll(branches, chain, client, times: 2)
        let afterFailover = await Self.leaders(cluster, branches, survivorClient, via: cluster.endpoints[survivor])
        try cluster.start(victim)
        try await cluster.waitReady(victim)
        try await Self.checkReplica(cluster.endpoints[victim], branches, chain, client)
        // No election for any partition: the leaders and terms are those before the restart.
        let afterRestart = await Self.leaders(cluster, branches, survivorClient, via: cluster.endpoints[survivor])
        for (path, leader) in afterFailover {
            #expect(afterRestart[path]?.node == leader.node && afterRestart[path]?.term == leader.term, "\(path)")
        }
        try await Self.advanceAll(branches, chain, client, times: 1)
        for endpoint in cluster.endpoints { try await Self.checkReplica(endpoint, branches, chain, client) }

        // A client that knows only a follower follows NotLeader to the leader.
        let sample = branches[0]
        let leaderNow = await Self.leaders(cluster, [sample], client, via: cluster.endpoints[0])[sample.path]!.node
        let follower = try cluster.client(endpoints: [cluster.endpoints[(leaderNow + 1) % 3]])
        defer { follower.close() }
        try await Self.advance(sample, chain, follower)

        try await refusals(cluster, client, chain, sample)

        // Graceful shutdown: every node exits 0 and leaves a WAL that verifies clean.
        for i in 0..<3 { #expect(cluster.stop(i) == 0, "node \(i) exit status") }
        for i in 0..<3 {
            let (status, output) = ProcessCluster.run(binary, ["wal", "verify", "--storage", cluster.storagePath(i)])
            #expect(status == 0, "wal verify node \(i): \(output)")
        }
    }

    /// Bad tokens, hostile bytes on every port and peers that cannot prove membership: each
    /// refused, with a write succeeding after each.
    func refusals(_ cluster: ProcessCluster, _ client: RaftClient, _ chain: CommitChain, _ branch: Branch) async throws
    {
        // Tokens.
        for token in ["", "not-the-token-of-this-cluster"] {
            let stranger = try RaftClient(endpoints: [cluster.endpoints[0]], token: token, deadline: .seconds(2))
            defer { stranger.close() }
            await #expect(throws: RaftClientError.self) { _ = try await stranger.clusterInfo() }
            try await Self.advance(branch, chain, client)
        }
        let metricsBefore = try LocalHTTP.get(cluster.httpEndpoints[0], "/metrics").body
        // The metrics the issue lists: proposals by result, commits, groups by state. Over
        // the three nodes: a node restarted after the kill may lead nothing yet.
        let allMetrics = try cluster.httpEndpoints.map { try LocalHTTP.get($0, "/metrics").body }.joined()
        for name in [
            "raftd_proposals_total{result=\"committed\"}", "raftd_entries_committed_total",
            "raftd_groups{state=\"quiesced\"}",
            "raftd_groups{state=\"dormant\"}", "raftd_wal_batch_durable_seconds", "raftd_elections_total",
            "raftd_peer_frames_total", "raftd_leaders",
        ] {
            #expect(allMetrics.contains(name), "/metrics has \(name)")
        }
        #expect(
            metricsBefore.contains(
                "raftd_client_requests_total{method=\"raftd.v1.ClusterService/ClusterInfo\",status=\"unauthenticated\"}"
            )
                || metricsBefore.contains("status=\"unauthenticated\""))

        // Garbage, truncated and oversized messages on the peer, gRPC and HTTP ports.
        let ports = [cluster.basePort, cluster.basePort + 1, cluster.basePort + 2]
        var random = SystemRandomNumberGenerator()
        for port in ports {
            for bytes in [
                (0..<4096).map { _ in UInt8.random(in: 0...255, using: &random) },
                [0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3], [0, 0, 0, 200, 1, 2, 3],
            ] {
                let socket = try TCPSocket(port: port)
                socket.send(bytes)
                socket.finishWriting()
                _ = socket.readAll()
            }
            try await Self.advance(branch, chain, client)
        }

        // Peers that cannot prove membership: the wrong cluster, the wrong secret, a node
        // the cluster does not know.
        let (ids, target, member, clusterID, secret) = try Self.identities(cluster)
        var stranger = NodeID.random()
        while !(stranger < ids[target]) { stranger = NodeID.random() }
        let cases: [(ClusterID, NodeID, [UInt8], String)] = [
            (ClusterID.random(), ids[member], secret, "wrong_cluster"),
            (clusterID, ids[member], Array("a secret of some other cluster".utf8), "wrong_secret"),
            (clusterID, stranger, secret, "unknown_node"),
        ]
        for (rogueCluster, rogueID, rogueSecret, cause) in cases {
            try await Self.rogue(
                cluster, target: (ids[target], target), as: rogueID, of: rogueCluster, secret: rogueSecret,
                refusedFor: cause)
            try await Self.advance(branch, chain, client)
        }
        // The HTTP port holds at most 64 connections: of 70 opened at once, the node closes
        // at least 6 unanswered (which ones depends on the order its event loops take
        // them), and it answers again once they go.
        let held = try (0..<70).map { _ in try TCPSocket(port: cluster.basePort + 2) }
        try await Task.sleep(for: .milliseconds(500))
        var closed = 0
        for socket in held {
            socket.send(Array("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            if socket.readAll().isEmpty { closed += 1 }
        }
        #expect(closed >= 6 && closed < 70, "\(closed) of 70 HTTP connections closed unanswered")
        try await eventually("the HTTP port answers again", within: 10) {
            try LocalHTTP.get(cluster.httpEndpoints[0], "/healthz").status == 200
        }
        let ready = try LocalHTTP.get(cluster.httpEndpoints[0], "/readyz")
        #expect(ready.status == 200, "\(ready.body)")
        #expect(try LocalHTTP.get(cluster.httpEndpoints[0], "/healthz").status == 200)
    }

    /// The nodes' IDs from their configs; the node with the largest ID (a rogue claiming
    /// the smallest, a real member, dials it) and the one with the smallest; the cluster
    /// ID and the shared secret.
    static func identities(
        _ cluster: ProcessCluster
    ) throws -> (
        ids: [NodeID], target: Int, member: Int, clusterID: ClusterID, secret: [UInt8]
    ) {
        func value(_ file: String, _ key: String) throws -> String {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            return text.split(separator: "\n").first { $0.hasPrefix("\(key) = ") }!.split(separator: "\"")[1]
                .description
        }
        let ids = try (0..<3).map { try NodeID(parsing: value(cluster.configFile($0), "id")) }
        let clusterID = try ClusterID(parsing: value(cluster.configFile(0), "cluster_id"))
        let secret = Array(
            (try String(contentsOfFile: cluster.directory + "/secret", encoding: .utf8)).trimmingCharacters(
                in: .whitespacesAndNewlines
            ).utf8)
        return (
            ids, ids.indices.max { ids[$0] < ids[$1] }!, ids.indices.min { ids[$0] < ids[$1] }!, clusterID, secret
        )
    }

    /// Runs a peer transport that dials `target` as `id` until the target counts a
    /// refusal for `cause`; it must never connect.
    static func rogue(
        _ cluster: ProcessCluster, target: (id: NodeID, index: Int), as id: NodeID, of clusterID: ClusterID,
        secret: [UInt8], tls: PeerTLS? = nil, refusedFor cause: String
    ) async throws {
        var configuration = PeerTransportConfiguration(
            nodeID: id, clusterID: clusterID, secret: secret, listen: PeerAddress(host: "127.0.0.1", port: 0),
            peers: [target.id: PeerAddress(host: "127.0.0.1", port: cluster.basePort + 10 * target.index)])
        configuration.reconnectMaximumMilliseconds = 100
        configuration.tls = tls
        let rogue = try PeerTransport(configuration: configuration)
        try await rogue.start(receiver: NoReceiver())
        try await eventually("node \(target.index) counts a \(cause) refusal", within: 20) {
            let text = try LocalHTTP.get(cluster.httpEndpoints[target.index], "/metrics").body
            return text.contains("raftd_peer_refusals_total{cause=\"\(cause)\"}")
        }
        #expect(rogue.connectedPeers.isEmpty, "\(cause)")
        await rogue.stop()
    }

    @Test(
        "Daemon: TLS on the gRPC and peer ports (raftd init --tls): the cluster replicates and a killed node rejoins; plaintext clients, plain bytes and peers whose certificate another CA signed are refused"
    )
    func tlsCluster() async throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary, tls: true)
        defer { cluster.stopAll() }
        try cluster.startAll()
        try await cluster.waitAllReady()
        let client = try cluster.client()
        defer { client.close() }
        let chain = try CommitChain(length: 8, directory: cluster.directory + "/chain")
        let branches = (0..<6).map { Branch(path: "tls/repo-\($0).git") }
        for branch in branches { _ = try await client.createRepository(branch.path) }
        // Forks join their pool's partition whichever node their path is created on (the
        // pool's leader verifies them; the client follows NotLeader there).
        let pool = try await client.createObjectPool("@pools/tls/pool.git")
        for n in 0..<6 {
            let fork = try await client.createRepository("tls/fork-\(n).git", objectPool: "@pools/tls/pool.git")
            #expect(fork.partitionKey == pool.partitionKey, "fork \(n)")
        }
        try await Self.advanceAll(branches, chain, client, times: 2)
        for endpoint in cluster.endpoints { try await Self.checkReplica(endpoint, branches, chain, client) }

        // A client without TLS gets an error naming the cause; the cluster keeps serving.
        let plain = try RaftClient(endpoints: [cluster.endpoints[0]], token: cluster.token, deadline: .seconds(2))
        defer { plain.close() }
        do {
            _ = try await plain.clusterInfo()
            Issue.record("a plaintext client was served by a TLS port")
        } catch let error as RaftClientError {
            #expect(error.message.contains("TLS"), "\(error)")
        }
        try await Self.advance(branches[0], chain, client)

        // Plain bytes on the peer port, then a peer that knows the cluster ID, a member's
        // ID and the secret but holds a certificate of another CA: both refused in TLS.
        let (ids, target, member, clusterID, secret) = try Self.identities(cluster)
        let socket = try TCPSocket(port: cluster.basePort + 10 * target)
        socket.send(Array("not TLS at all".utf8))
        socket.finishWriting()
        _ = socket.readAll()
        let other = try ProcessCluster(binary: binary, tls: true)
        defer { other.stopAll() }
        let foreign = try PeerTLS(
            certificateFile: other.directory + "/tls/node1.pem", keyFile: other.directory + "/tls/node1.key",
            caFile: other.directory + "/tls/ca.pem")
        try await Self.rogue(
            cluster, target: (ids[target], target), as: ids[member], of: clusterID, secret: secret, tls: foreign,
            refusedFor: "tls_handshake")
        // Inside TLS, membership is still proven: this cluster's certificate, another secret.
        let own = try PeerTLS(
            certificateFile: cluster.directory + "/tls/node1.pem", keyFile: cluster.directory + "/tls/node1.key",
            caFile: cluster.directory + "/tls/ca.pem")
        try await Self.rogue(
            cluster, target: (ids[target], target), as: ids[member], of: clusterID,
            secret: Array("a secret of some other cluster".utf8), tls: own, refusedFor: "wrong_secret")
        try await Self.advance(branches[1], chain, client)

        // kill -9 of a node: writes go on, and the restarted node rejoins over TLS.
        cluster.crash(2)
        try await Self.advanceAll(branches, chain, client, times: 1)
        try cluster.start(2)
        try await cluster.waitReady(2)
        try await Self.advanceAll(branches, chain, client, times: 1)
        for endpoint in cluster.endpoints { try await Self.checkReplica(endpoint, branches, chain, client) }
    }

    @Test("Daemon: configuration errors exit non-zero, naming the field")
    func configurationErrors() throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let cluster = try ProcessCluster(binary: binary, nodes: 3)
        defer { cluster.stopAll() }
        let good = try String(contentsOfFile: cluster.configFile(0), encoding: .utf8)
        func attempt(_ text: String, expect field: String, setup: () throws -> Void = {}) throws {
            try setup()
            let file = cluster.directory + "/bad.toml"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let (status, output) = ProcessCluster.run(binary, ["serve", "--config", file])
            #expect(status != 0, "\(field): exit status")
            #expect(output.contains(field), "\(field): \(output)")
        }
        try attempt(
            good.replacingOccurrences(of: "path = \"data/node1\"", with: "path = \"data/missing\""),
            expect: "storage[0].path")
        try attempt(
            good + "\n[[storage]]\nname = \"s1\"\npath = \"data/node2\"\n", expect: "storage[1].name")
        try attempt(
            good.replacingOccurrences(of: "peer = \"127.0.0.1:\(cluster.basePort)\"", with: "peer = \"127.0.0.1\""),
            expect: "listen.peer")
        try attempt(
            good.replacingOccurrences(of: "secret_file = \"secret\"", with: "secret_file = \"nope\""),
            expect: "auth.secret_file")
        try attempt(good.replacingOccurrences(of: "tick_ms = 10", with: "tick_ms = \"fast\""), expect: "raft.tick_ms")
        try attempt(good + "\n[surprise]\n", expect: "surprise")
        // A secret file readable by others.
        try attempt(good, expect: "auth.secret_file") {
            chmod(cluster.directory + "/secret", 0o644)
        }
        chmod(cluster.directory + "/secret", 0o600)
        // TLS: a key readable by others, and a key that is not the certificate's.
        let secure = try ProcessCluster(binary: binary, nodes: 3, tls: true)
        defer { secure.stopAll() }
        let tlsSection =
            "\n[tls]\ncert_file = \"\(secure.directory)/tls/node1.pem\"\nca_file = \"\(secure.directory)/tls/ca.pem\"\n"
        try attempt(good + tlsSection + "key_file = \"\(secure.directory)/tls/node1.key\"\n", expect: "tls.key_file") {
            chmod(secure.directory + "/tls/node1.key", 0o644)
        }
        chmod(secure.directory + "/tls/node1.key", 0o600)
        try attempt(good + tlsSection + "key_file = \"\(secure.directory)/tls/node2.key\"\n", expect: "tls")
        try attempt(good + tlsSection, expect: "tls.key_file")
        // A port in use.
        let busy = try TCPListener()
        try attempt(
            good.replacingOccurrences(
                of: "http = \"127.0.0.1:\(cluster.basePort + 2)\"", with: "http = \"127.0.0.1:\(busy.port)\""),
            expect: "listen.http")
    }
}

/// Receives nothing (a rogue peer's transport).
final class NoReceiver: FrameReceiver {
    func receive(_ frame: PeerFrame) {}
    func serve(_ request: BulkRequest, from: NodeID) async -> BulkResponse { .refused("rogue") }
}

/// A listening socket on a free port (to make a port "in use").
final class TCPListener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(fd, pointer, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw DaemonTestError("cannot bind a listener")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

import CRaftIO
import Dispatch
import Foundation
import NIOHTTP1
import RaftConsensus
import RaftEngine
import RaftTransport
import Synchronization

/// A refusal of a Git HTTP request: its status and the message git prints (`remote: …`).
struct GitServiceError: Error, CustomStringConvertible {
    var status: HTTPResponseStatus
    var message: String
    var headers: [(String, String)] = []

    var description: String { "\(status.code) \(message)" }

    static func internalError(_ message: String) -> GitServiceError {
        GitServiceError(status: .internalServerError, message: message)
    }
}

/// One Git smart-HTTP request, parsed and authenticated (`GitHTTPServer`).
struct GitRequest: Sendable {
    enum Service: String, Sendable {
        case uploadPack = "git-upload-pack"
        case receivePack = "git-receive-pack"
    }

    enum Kind: Sendable {
        /// `GET …/info/refs?service=…`
        case advertisement(Service)
        /// `POST …/git-upload-pack` or `…/git-receive-pack`
        case rpc(Service)
    }

    var kind: Kind
    var repository: RelativePath
    /// The `Git-Protocol` header (checked: `version=2` and the like).
    var gitProtocol: String?
    /// `Raftd-Consistency: linearizable`: the replica waits for a ReadIndex before it
    /// advertises its references.
    var linearizable: Bool
    /// `Raftd-Storage: NAME`: only this storage of the node is searched.
    var storage: StorageName?
    var gzipBody: Bool
    /// The expiry of the push ticket the URL carried (nil: none). A redirect of a ticketed
    /// request keeps it: a ticket is never extended.
    var ticketExpiry: Int? = nil

    /// `/<relative path>` percent-encoded for a URL (each component), as redirects and
    /// relays send it.
    var encodedPath: String {
        // ASCII only: NIO's strict parser refuses raw bytes of 0x80 and above in a path.
        let allowed = CharacterSet(
            charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~@+=,!$&'()*;")
        return "/"
            + repository.rawValue.split(separator: "/", omittingEmptySubsequences: false).map {
                String($0).addingPercentEncoding(withAllowedCharacters: allowed) ?? String($0)
            }.joined(separator: "/")
    }

    var service: Service {
        switch kind {
        case .advertisement(let service), .rpc(let service): service
        }
    }
}

/// Serves Git's smart HTTP protocol for the repositories of this node's partitions.
///
/// - Fetch and clone: any replica serves at its applied index with `git upload-pack`.
///   Each request is answered by the replica that receives it; a replica's state only moves
///   forward and objects are never deleted (no gc runs on replicas), so every object an
///   advertisement names is still there when the request that follows asks for it.
/// - Push: the partition's leader runs `git receive-pack` with its objects going to a
///   per-push staging directory; the `proc-receive` hook (`raftd-git-hook`) hands the ref
///   commands here, and `GitPushSession` proposes the pack and the updates as one entry and
///   answers per ref once it is committed and applied. A follower redirects (307) the
///   push's advertisement to the leader.
final class GitService: Sendable {
    let server: RaftServer
    let git: String
    /// The directory holding `proc-receive` (a link to `raftd-git-hook`).
    let hooksDirectory: String
    /// Where request bodies are spooled and pushes staged (the first storage's
    /// `+raft/tmp/git`; emptied at start).
    let workDirectory: String
    let counters = GitCounters()
    /// The admission gate (it signs the push tickets of redirects).
    let gate = Mutex<GitGate?>(nil)
    private let sequence = Atomic<UInt64>(0)

    /// Prepares the work and hooks directories; removes what a crash left in them.
    init(server: RaftServer, git: String = "/usr/bin/git", hook: String) throws(GitServiceError) {
        self.server = server
        self.git = git
        let tmp = StorageLayout(root: server.configuration.storages[0].path).tmpDirectory
        workDirectory = tmp + "/git"
        hooksDirectory = tmp + "/git-hooks"
        guard access(git, X_OK) == 0 else {
            throw .internalError("\(git) is not an executable: install git (apt-get install git)")
        }
        guard access(hook, X_OK) == 0 else {
            throw .internalError(
                "\(hook) is missing: it is git's proc-receive hook for pushes, built with raftd (swift build --product raftd-git-hook)"
            )
        }
        do {
            if FileSystem.exists(workDirectory) { try FileSystem.removeTree(workDirectory) }
            try FileSystem.makeDirectory(workDirectory, mode: 0o700)
            if FileSystem.exists(hooksDirectory) { try FileSystem.removeTree(hooksDirectory) }
            try FileSystem.makeDirectory(hooksDirectory, mode: 0o700)
        } catch {
            throw .internalError("preparing \(workDirectory): \(error)")
        }
        guard symlink(hook, hooksDirectory + "/proc-receive") == 0 else {
            throw .internalError("linking \(hooksDirectory)/proc-receive: \(String(cString: strerror(errno)))")
        }
    }

    /// A new path under the work directory.
    func workPath(_ prefix: String) -> String {
        let n = sequence.add(1, ordering: .relaxed).newValue
        return "\(workDirectory)/\(prefix)-\(n)"
    }

    /// The environment of every git process: no user or system configuration, no prompts.
    func environment(_ request: GitRequest, extra: [String: String] = [:]) -> [String: String] {
        var env = [
            "PATH": "/usr/local/bin:/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "HOME": workDirectory, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
        ]
        if let value = request.gitProtocol { env["GIT_PROTOCOL"] = value }
        env.merge(extra) { $1 }
        return env
    }

    // MARK: - Serving one request (on its own thread)

    /// Serves `request`; `body` is the spooled request body (POST). Never throws: every
    /// failure becomes an HTTP answer, or a closed connection once the answer has begun.
    func serve(_ request: GitRequest, body: String?, responder: GitResponder) {
        var status: UInt = 200
        do throws(GitServiceError) {
            let target: Target
            do {
                target = try locate(request)
            } catch {
                // git posts to the URL it started from when its first request's redirect
                // came after a 401: relayed to a node that holds a replica.
                guard case .rpc = request.kind, let hop = replicaElsewhere(request) else { throw error }
                counters.relayed.add(1, ordering: .relaxed)
                try GitRelay.forward(
                    request, body: body, to: hop.address,
                    path: "\(hop.ticket)\(request.encodedPath)/\(request.service.rawValue)", responder: responder)
                counters.count(request.service, status: 200)
                return
            }
            switch request.kind {
            case .advertisement(let service):
                try advertise(service, request, target, responder)
            case .rpc(.uploadPack):
                try uploadPack(request, target, body: body, responder)
            case .rpc(.receivePack):
                try receivePack(request, target, body: body, responder)
            }
        } catch {
            status = error.status.code
            if responder.headSent {
                responder.abort()
            } else {
                responder.respond(error.status, body: error.message + "\n", headers: error.headers)
            }
        }
        counters.count(request.service, status: status)
    }

    /// Where a repository is on this node.
    struct Target {
        var key: PartitionKey
        var storageRoot: String
        var directory: String
        var machine: PartitionStateMachine
    }

    func locate(_ request: GitRequest) throws(GitServiceError) -> Target {
        let path = request.repository
        var storages = server.configuration.storages
        if let wanted = request.storage {
            storages = storages.filter { $0.name == wanted }
            guard !storages.isEmpty else {
                let here = server.configuration.storages.map(\.name.description).joined(separator: ", ")
                let holder = server.configuration.peers.first { $0.storages.contains(wanted) }
                throw GitServiceError(
                    status: .notFound,
                    message: holder.map {
                        "storage \(wanted) is on node \($0.name)\($0.gitAddress.map { " (git URL http://\($0)/)" } ?? ""), not on this node (storages: \(here)): ask that node"
                    } ?? "storage \(wanted) is not in this cluster (this node has: \(here))")
            }
        }
        for entry in storages {
            guard let store = server.metadata[entry.name], let key = try? store.partition(of: path) else { continue }
            guard let machine = server.machines.machine(key) else { continue }
            let directory: String
            do { directory = try path.resolved(under: entry.path) } catch {
                throw GitServiceError(status: .badRequest, message: "repository path \(path): \(error)")
            }
            // git splits its alternates variable at ':' (and alternates files at newlines):
            // such a path could name another repository's objects.
            guard !directory.utf8.contains(where: { $0 == UInt8(ascii: ":") || $0 < 0x20 }) else {
                throw GitServiceError(
                    status: .badRequest,
                    message: "repository path \(path) has a ':' or a control character; git cannot serve it safely")
            }
            guard FileSystem.exists(directory + "/HEAD") else { continue }
            return Target(key: key, storageRoot: entry.path, directory: directory, machine: machine)
        }
        if let redirect = redirectToReplica(request) { throw redirect }
        let names = storages.map(\.name.description).joined(separator: ", ")
        throw GitServiceError(
            status: .notFound,
            message:
                "repository \(path) not found on this node's storages (\(names)). Create it first: raftd repo create \(path) --endpoints … --token-file …"
        )
    }

    /// `GET …/info/refs?service=…`: the reference advertisement. A push's goes to the
    /// partition's leader (a follower redirects there), at the leader's lease-read index; a
    /// fetch's is this replica's, after a ReadIndex when the client asks for linearizable.
    private func advertise(
        _ service: GitRequest.Service, _ request: GitRequest, _ target: Target, _ responder: GitResponder
    ) throws(GitServiceError) {
        if service == .receivePack, let leader = try leader(request, target) {
            counters.redirects.add(1, ordering: .relaxed)
            let ticket =
                gate.withLock { $0 }?.ticket(
                    for: request.repository, service: .receivePack, expiry: request.ticketExpiry)
                ?? ""
            throw GitServiceError(
                status: .temporaryRedirect, message: "pushes go to the partition's leader, node \(leader.name)",
                headers: [
                    (
                        "Location",
                        "http://\(leader.address)\(ticket)\(request.encodedPath)/info/refs?service=git-receive-pack"
                    )
                ])
        }
        if service == .receivePack || request.linearizable {
            let reader = server.reader
            let key = target.key
            let repository = request.repository
            let consistency: PartitionReadConsistency = service == .receivePack ? .lease : .linearizable
            let result = blocking { () async -> PartitionReadError? in
                do throws(PartitionReadError) {
                    _ = try await reader.references(key, repository: repository, consistency: consistency)
                    return nil
                } catch { return error }
            }
            if let result {
                throw GitServiceError(
                    status: .serviceUnavailable,
                    message:
                        "cannot serve a \(consistency == .lease ? "leader's" : "linearizable") view now: \(result); retry"
                )
            }
        }
        let process = try GitProcess(
            git: git, arguments: [service.command, "--stateless-rpc", "--advertise-refs", target.directory],
            environment: environment(request), input: -1, errorFile: -1)
        guard let output = process.readAll(limit: 1 << 30) else {
            process.kill()
            process.wait()
            throw .internalError("the reference advertisement is larger than 1 GiB")
        }
        guard process.wait() else {
            throw .internalError("git \(service.command) --advertise-refs failed (\(process.outcome))")
        }
        var body: [UInt8] = []
        if !(request.gitProtocol?.contains("version=2") ?? false) {
            body += PktLineChannel.encode(PktLineChannel.line("# service=\(service.rawValue)"))
            body += PktLineChannel.encode(.flush)
        }
        body += output
        responder.respond(
            .ok, contentType: "application/x-\(service.rawValue)-advertisement", body: body,
            headers: [("Cache-Control", "no-cache")])
    }

    /// nil when this replica leads the partition; else the leading node's name and Git
    /// address. Throws 503 when no leader is known (or it has no Git address here).
    private func leader(
        _ request: GitRequest, _ target: Target
    ) throws(GitServiceError) -> (name: String, address: PeerAddress)? {
        let host = server.host
        let key = target.key
        var status: ReplicaStatus? = nil
        // A dormant partition knows no leader until asked: wake it, and wait for an
        // election (a few election timeouts at most).
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            status = blocking { () async -> ReplicaStatus? in try? await host.status(of: key) }
            guard let current = status else { break }
            if current.role == .leader || current.leader != .none { break }
            host.seekLeader(of: key)
            Thread.sleep(forTimeInterval: 0.05)
        }
        guard let status else {
            throw GitServiceError(status: .serviceUnavailable, message: "partition \(key) has no replica here now")
        }
        if status.role == .leader { return nil }
        guard status.leader != .none, let node = status.memberNodes[status.leader] else {
            throw GitServiceError(
                status: .serviceUnavailable,
                message:
                    "no leader is known for this repository's partition now (an election may be running, or a majority of its nodes is down); push again in a few seconds"
            )
        }
        guard node != server.configuration.nodeID,
            let peer = server.configuration.peers.first(where: { $0.id == node })
        else {
            throw GitServiceError(
                status: .serviceUnavailable, message: "this node is becoming the leader; push again in a second")
        }
        guard let address = peer.gitAddress else {
            throw GitServiceError(
                status: .serviceUnavailable,
                message:
                    "node \(peer.name) leads this repository's partition, and this node's configuration has no Git address for it ([[peer]] git): push to that node's Git URL"
            )
        }
        return (peer.name, address)
    }

    /// `POST …/git-upload-pack`: `git upload-pack --stateless-rpc` on this replica.
    private func uploadPack(
        _ request: GitRequest, _ target: Target, body: String?, _ responder: GitResponder
    ) throws(GitServiceError) {
        let input = try openBody(request, body)
        defer { close(input) }
        let errors = try openErrorFile()
        defer { close(errors.fd) }
        let process = try GitProcess(
            git: git, arguments: ["upload-pack", "--stateless-rpc", target.directory],
            environment: environment(request), input: input, errorFile: errors.fd)
        let sent = try stream(process, "application/x-git-upload-pack-result", errors, responder)
        counters.uploadBytes.add(UInt64(sent), ordering: .relaxed)
    }

    /// `POST …/git-receive-pack`: `git receive-pack --stateless-rpc` into a staging
    /// directory, with `raftd-git-hook` as its proc-receive hook (a socket pair as its
    /// descriptor 3) and `GitPushSession` on the other end.
    private func receivePack(
        _ request: GitRequest, _ target: Target, body: String?, _ responder: GitResponder
    ) throws(GitServiceError) {
        if let leader = try leader(request, target) {
            // A push that came with a ticket was sent here by a node that took this one
            // for the leader: one hop only (no relay chains), git retries.
            guard request.ticketExpiry == nil else {
                throw GitServiceError(
                    status: .serviceUnavailable,
                    message:
                        "the partition's leadership moved while the push was on its way (now node \(leader.name)); nothing was applied: push again"
                )
            }
            // git sends the push to the URL it started from when the redirect came after a
            // 401 (git 2.39 moves its base URL only on a first request's redirect): relay
            // it to the leader, which this node vouches for with a push ticket.
            let ticket = gate.withLock { $0 }?.ticket(for: request.repository, service: .receivePack, expiry: nil) ?? ""
            counters.relayed.add(1, ordering: .relaxed)
            try GitRelay.forward(
                request, body: body, to: leader.address,
                path: "\(ticket)\(request.encodedPath)/git-receive-pack", responder: responder)
            return
        }
        let input = try openBody(request, body)
        defer { close(input) }
        let staging = workPath("push")
        do {
            try FileSystem.makeDirectory(staging, mode: 0o700)
            try FileSystem.makeDirectory(staging + "/objects")
            try FileSystem.makeDirectory(staging + "/objects/pack")
            try FileSystem.makeDirectory(staging + "/objects/info")
        } catch {
            throw GitServiceError(status: .insufficientStorage, message: "cannot stage the push: \(error)")
        }
        defer { try? FileSystem.removeTree(staging) }
        // The incarnation the pack is indexed against: the commit refuses if the repository
        // is removed and re-created, or relinked, before it is verified.
        guard let identity = RepositoryIdentity.current(storageRoot: target.storageRoot, path: request.repository)
        else {
            throw GitServiceError(status: .notFound, message: "repository \(request.repository) was just removed")
        }
        let errors = try openErrorFile()
        defer { close(errors.fd) }
        var pair: [Int32] = [-1, -1]
        let rc = pair.withUnsafeMutableBufferPointer { craft_socketpair($0.baseAddress!) }
        guard rc == 0 else { throw .internalError("socketpair: \(String(cString: strerror(-rc)))") }
        let config = [
            "receive.procReceiveRefs=refs", "core.hooksPath=\(hooksDirectory)", "receive.unpackLimit=1",
            "transfer.fsckObjects=true", "receive.autogc=false", "receive.updateServerInfo=false",
        ]
        let process: GitProcess
        do {
            process = try GitProcess(
                git: git,
                arguments: config.flatMap { ["-c", $0] } + ["receive-pack", "--stateless-rpc", target.directory],
                environment: environment(
                    request,
                    extra: [
                        "GIT_OBJECT_DIRECTORY": staging + "/objects",
                        "GIT_ALTERNATE_OBJECT_DIRECTORIES": target.directory + "/objects",
                    ]), input: input, errorFile: errors.fd, extra: pair[1])
        } catch {
            close(pair[0])
            close(pair[1])
            throw error
        }
        close(pair[1])
        let session = GitPushSession(
            service: self, key: target.key, repository: request.repository, staging: staging + "/objects",
            identity: identity)
        let done = DispatchSemaphore(value: 0)
        let socket = pair[0]
        Thread.detachNewThread {
            session.run(socket)
            close(socket)
            done.signal()
        }
        defer { done.wait() }
        _ = try stream(process, "application/x-git-receive-pack-result", errors, responder)
    }

    /// Streams the child's output as the response (chunked). The status is decided by the
    /// first output: a child that fails before writing anything is a 400 with its message
    /// (a request git could not parse).
    private func stream(
        _ process: GitProcess, _ contentType: String, _ errors: (fd: Int32, path: String), _ responder: GitResponder
    ) throws(GitServiceError) -> Int {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 18, alignment: 16)
        defer { buffer.deallocate() }
        var n = process.read(into: buffer)
        if n == 0 {
            let ok = process.wait()
            let message = Self.errorText(errors.fd)
            guard ok else {
                throw GitServiceError(
                    status: .badRequest,
                    message: "git refused the request (\(process.outcome))\(message.isEmpty ? "" : ": \(message)")")
            }
        }
        responder.begin(.ok, contentType: contentType, headers: [("Cache-Control", "no-cache")])
        var sent = 0
        while n > 0 {
            guard responder.send(UnsafeRawBufferPointer(rebasing: buffer[..<n])) else {
                // The client went away: stop git (a push's hook session still finishes
                // what it started).
                process.kill()
                process.wait()
                responder.abort()
                return sent
            }
            sent += n
            n = process.read(into: buffer)
        }
        guard process.wait() else {
            responder.abort()
            return sent
        }
        responder.end()
        return sent
    }

    /// The request body for git's standard input: the spooled file, inflated first when
    /// it came gzip-encoded.
    private func openBody(_ request: GitRequest, _ body: String?) throws(GitServiceError) -> Int32 {
        guard let body else { return open("/dev/null", O_RDONLY | O_CLOEXEC) }
        let fd = open(body, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .internalError("reading the request body: \(String(cString: strerror(errno)))") }
        guard request.gzipBody else { return fd }
        defer { close(fd) }
        let inflated = body + ".inflated"
        let out = open(inflated, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard out >= 0 else {
            throw GitServiceError(
                status: .insufficientStorage, message: "cannot spool the request: \(String(cString: strerror(errno)))")
        }
        unlink(inflated)
        let written = craft_gunzip(fd, out, Int64(server.configuration.gitMaximumPushBytes))
        guard written >= 0 else {
            close(out)
            switch -Int32(written) {
            case EINVAL: throw GitServiceError(status: .badRequest, message: "the gzip-encoded body is damaged")
            case EFBIG:
                throw GitServiceError(
                    status: .payloadTooLarge,
                    message:
                        "the inflated body is over \(server.configuration.gitMaximumPushBytes >> 20) MiB ([git] max_push_mib)"
                )
            default: throw .internalError("inflating the body: \(String(cString: strerror(-Int32(written))))")
            }
        }
        lseek(out, 0, SEEK_SET)
        return out
    }

    /// A file for a child's standard error, unlinked at once (nothing is left behind).
    private func openErrorFile() throws(GitServiceError) -> (fd: Int32, path: String) {
        let path = workPath("stderr")
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw GitServiceError(
                status: .insufficientStorage, message: "cannot run git: \(String(cString: strerror(errno)))")
        }
        unlink(path)
        return (fd, path)
    }

    /// The first 1,000 characters of a child's standard error, on one line.
    static func errorText(_ fd: Int32) -> String {
        var bytes = [UInt8](repeating: 0, count: 1_000)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return "" }
        return String(decoding: bytes.prefix(n), as: UTF8.self)
            .split(whereSeparator: \.isNewline).joined(separator: "; ")
    }
}

extension GitRequest.Service {
    var command: String {
        switch self {
        case .uploadPack: "upload-pack"
        case .receivePack: "receive-pack"
        }
    }
}

/// Runs `body` on Swift's concurrency pool and waits for it: for the git threads, which
/// are their own (never the pool's) and may block.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await body()
        box.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return box.withLock { $0! }
}

/// Git HTTP figures for /metrics.
final class GitCounters: Sendable {
    let redirects = Atomic<UInt64>(0)
    let relayed = Atomic<UInt64>(0)
    let uploadBytes = Atomic<UInt64>(0)
    let pushesAccepted = Atomic<UInt64>(0)
    let pushesRefused = Atomic<UInt64>(0)
    let pushedBytes = Atomic<UInt64>(0)
    let unauthorized = Atomic<UInt64>(0)
    let busy = Atomic<UInt64>(0)
    private let requests = Mutex<[String: UInt64]>([:])

    func count(_ service: GitRequest.Service, status: UInt) {
        requests.withLock { $0["\(service.rawValue)|\(status)", default: 0] += 1 }
    }

    /// Requests by service and HTTP status.
    var byServiceAndStatus: [(service: String, status: String, count: UInt64)] {
        requests.withLock { counts in
            counts.map { key, value in
                let parts = key.split(separator: "|")
                return (String(parts[0]), String(parts[1]), value)
            }
        }
    }
}

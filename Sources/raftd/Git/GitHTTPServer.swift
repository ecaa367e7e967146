import Crypto
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import RaftEngine
import Synchronization

/// The node's Git smart-HTTP listener (`[listen] git`). Requests are parsed and
/// authenticated on the event loop; bodies are spooled to a file under the first storage
/// (bounded by `[git] max_push_mib`); each request is then served by `GitService` on a
/// thread of its own (it runs a git process), at most `[git] max_requests` at once.
final class GitHTTPServer: Sendable {
    private let channel: any Channel
    let service: GitService

    private init(channel: any Channel, service: GitService) {
        self.channel = channel
        self.service = service
    }

    var port: Int { channel.localAddress?.port ?? 0 }

    static func start(
        host: String, port: Int, group: MultiThreadedEventLoopGroup, service: GitService
    ) async throws -> GitHTTPServer {
        let gate = GitGate(service: service)
        service.gate.withLock { $0 = gate }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // A connection idle for 60 s between requests closes (a request being
                    // served is not idle, however long git takes).
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(60)))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(GitHTTPHandler(gate: gate))
                }
            }
            .bind(host: host, port: port).get()
        return GitHTTPServer(channel: channel, service: service)
    }

    func stop() async { try? await channel.close() }
}

/// Admission: parsing, authentication and the bound on requests at once.
final class GitGate: Sendable {
    let service: GitService
    private let slots = Atomic<Int>(0)

    init(service: GitService) { self.service = service }

    func acquire() -> Bool {
        let limit = service.server.configuration.gitMaximumRequests
        if slots.add(1, ordering: .relaxed).newValue <= limit { return true }
        slots.subtract(1, ordering: .relaxed)
        service.counters.busy.add(1, ordering: .relaxed)
        return false
    }

    func release() { slots.subtract(1, ordering: .relaxed) }

    /// The request, or the error to answer with.
    func admit(_ head: HTTPRequestHead) -> Result<GitRequest, GitServiceError> {
        var uri = head.uri
        var ticket: (expiry: Int, mac: String)? = nil
        if uri.hasPrefix(Self.ticketPrefix) {
            // /+push/<expiry>/<mac>/<repository>/…: a push redirected by a follower.
            let parts = uri.dropFirst(Self.ticketPrefix.count).split(separator: "/", maxSplits: 2)
            guard parts.count == 3, let expiry = Int(parts[0]) else {
                return .failure(GitServiceError(status: .badRequest, message: "a damaged push ticket in the URL"))
            }
            ticket = (expiry, String(parts[1]))
            uri = "/" + parts[2]
        }
        let parsed = parse(head, uri: uri)
        guard case .success(var request) = parsed else { return parsed }
        if let ticket {
            guard valid(ticket, for: request.repository, request.service) else {
                service.counters.unauthorized.add(1, ordering: .relaxed)
                return .failure(
                    GitServiceError(
                        status: .unauthorized,
                        message:
                            "the ticket in the URL is expired or not for this repository: use any node's URL again"
                    ))
            }
            request.ticketExpiry = ticket.expiry
            return .success(request)
        }
        let header = head.headers["Authorization"].first
        guard authorized(header) else {
            service.counters.unauthorized.add(1, ordering: .relaxed)
            return .failure(Self.unauthorized)
        }
        return parsed
    }

    static let unauthorized = GitServiceError(
        status: .unauthorized,
        message:
            "authentication required: give the cluster's client token as the password (HTTP Basic, any user name) or as a Bearer token (git -c http.extraHeader='Authorization: Bearer TOKEN')",
        headers: [("WWW-Authenticate", "Basic realm=\"raftd\"")])

    /// A follower redirects a push to the leader with a ticket in the URL: curl does not
    /// carry credentials to another host:port on a redirect, so the follower, having
    /// authenticated the client, vouches for it. The ticket is an HMAC under the cluster's
    /// shared secret of the repository and an expiry (30 minutes, never extended: a redirect
    /// of a ticketed request keeps its expiry), good only for pushes to that repository. A
    /// node with no replica of a repository redirects its clones and fetches the same way,
    /// with a fetch ticket (another label under the MAC: not good for pushes).
    /// Nodes' clocks may differ by up to a minute.
    static let ticketPrefix = "/+push/"
    static let ticketSeconds = 1_800

    /// A ticket for `repository`, expiring at `expiry` (nil: ticketSeconds from now).
    func ticket(for repository: RelativePath, service: GitRequest.Service, expiry given: Int?) -> String {
        let expiry = given ?? Int(Date().timeIntervalSince1970) + Self.ticketSeconds
        return "\(Self.ticketPrefix)\(expiry)/\(mac(repository, service, expiry))"
    }

    /// A push ticket keeps the label it always had; a fetch ticket (a node without a replica
    /// redirecting a clone) has its own, so neither is good for the other.
    private func mac(_ repository: RelativePath, _ service: GitRequest.Service, _ expiry: Int) -> String {
        let configuration = service == .receivePack ? "push" : "fetch"
        let server = self.service.server.configuration
        let key = SymmetricKey(data: server.secret)
        let message = Array(
            "raftd git \(configuration) ticket|\(server.clusterID)|\(expiry)|\(repository.rawValue)".utf8)
        return HMAC<Crypto.SHA256>.authenticationCode(for: message, using: key).prefix(16)
            .map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    private func valid(
        _ ticket: (expiry: Int, mac: String), for repository: RelativePath, _ service: GitRequest.Service
    ) -> Bool {
        let now = Int(Date().timeIntervalSince1970)
        guard ticket.expiry >= now, ticket.expiry <= now + Self.ticketSeconds + 60 else { return false }
        return constantTimeEqual(Array(mac(repository, service, ticket.expiry).utf8), Array(ticket.mac.utf8))
    }

    private func parse(_ head: HTTPRequestHead, uri: String) -> Result<GitRequest, GitServiceError> {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard let rawPath = parts.first, let path = String(rawPath).removingPercentEncoding else {
            return .failure(GitServiceError(status: .badRequest, message: "the URL path is not valid"))
        }
        let query = parts.count > 1 ? String(parts[1]) : ""
        let kind: GitRequest.Kind
        let prefix: Substring
        if path.hasSuffix("/info/refs") {
            guard head.method == .GET else {
                return .failure(GitServiceError(status: .methodNotAllowed, message: "info/refs takes GET"))
            }
            let service = query.split(separator: "&").first { $0.hasPrefix("service=") }?.dropFirst("service=".count)
            switch service {
            case "git-upload-pack": kind = .advertisement(.uploadPack)
            case "git-receive-pack": kind = .advertisement(.receivePack)
            default:
                return .failure(
                    GitServiceError(
                        status: .forbidden,
                        message:
                            "only git's smart HTTP protocol is served (info/refs?service=git-upload-pack or git-receive-pack); git 1.6.6 and later use it"
                    ))
            }
            prefix = path.dropLast("/info/refs".count)
        } else if path.hasSuffix("/git-upload-pack") || path.hasSuffix("/git-receive-pack") {
            guard head.method == .POST else {
                return .failure(GitServiceError(status: .methodNotAllowed, message: "git's requests are POSTs"))
            }
            let service: GitRequest.Service = path.hasSuffix("/git-upload-pack") ? .uploadPack : .receivePack
            kind = .rpc(service)
            prefix = path.dropLast(service.rawValue.count + 1)
        } else {
            return .failure(
                GitServiceError(
                    status: .notFound,
                    message: "not a Git smart HTTP URL: use http://HOST:PORT/<relative path> as git's remote URL"))
        }
        guard prefix.hasPrefix("/"), let repository = try? RelativePath(String(prefix.dropFirst())) else {
            return .failure(
                GitServiceError(
                    status: .badRequest,
                    message:
                        "\(String(prefix.prefix(200))) is not a valid relative path (no '..', no absolute path, no empty component, not under +raft)"
                ))
        }
        var gitProtocol: String? = nil
        if let value = head.headers["Git-Protocol"].first {
            let allowed = value.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                    || b == UInt8(ascii: "=") || b == UInt8(ascii: ":") || b == UInt8(ascii: ".")
                    || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
            }
            guard allowed, value.utf8.count <= 256 else {
                return .failure(GitServiceError(status: .badRequest, message: "the Git-Protocol header is not valid"))
            }
            gitProtocol = value
        }
        var storage: StorageName? = nil
        if let value = head.headers["Raftd-Storage"].first {
            guard let name = try? StorageName(value) else {
                return .failure(GitServiceError(status: .badRequest, message: "Raftd-Storage: not a storage name"))
            }
            storage = name
        }
        let consistency = head.headers["Raftd-Consistency"].first?.lowercased()
        guard consistency == nil || consistency == "linearizable" || consistency == "applied" else {
            return .failure(
                GitServiceError(
                    status: .badRequest, message: "Raftd-Consistency: use linearizable (or applied, the default)"))
        }
        let encoding = head.headers["Content-Encoding"].first?.lowercased()
        guard encoding == nil || encoding == "gzip" || encoding == "x-gzip" || encoding == "identity" else {
            return .failure(
                GitServiceError(
                    status: .unsupportedMediaType, message: "Content-Encoding \(encoding!) is not supported"))
        }
        return .success(
            GitRequest(
                kind: kind, repository: repository, gitProtocol: gitProtocol,
                linearizable: consistency == "linearizable", storage: storage,
                gzipBody: encoding == "gzip" || encoding == "x-gzip"))
    }

    /// Basic (any user, the token as password) or Bearer, compared in constant time.
    private func authorized(_ header: String?) -> Bool {
        guard let header else { return false }
        let token = service.server.configuration.token
        var presented: [UInt8]? = nil
        if header.lowercased().hasPrefix("bearer ") {
            presented = Array(header.dropFirst("bearer ".count).trimmingCharacters(in: .whitespaces).utf8)
        } else if header.lowercased().hasPrefix("basic ") {
            let encoded = header.dropFirst("basic ".count).trimmingCharacters(in: .whitespaces)
            if let data = Data(base64Encoded: encoded), let colon = data.firstIndex(of: UInt8(ascii: ":")) {
                presented = Array(data[data.index(after: colon)...])
            }
        }
        guard let presented else { return false }
        return constantTimeEqual(token, presented)
    }
}

/// One connection's requests. The body of an admitted POST is spooled to a file as it
/// arrives; at its end the request goes to a thread of its own.
private final class GitHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// Admitted; the body (if any) goes to `fd` at `path`.
        case receiving(GitRequest, fd: Int32, path: String?, bytes: Int, keepAlive: Bool)
        /// Refused: the body is dropped, the answer goes out at its end.
        case refusing(GitServiceError, keepAlive: Bool)
        /// Answered already (a body over the limit): the rest of the body is dropped.
        case discarding
        case serving
    }

    let gate: GitGate
    private var state = State.idle

    init(gate: GitGate) { self.gate = gate }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if case .serving = state { return }
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .receiving(_, let fd, let path, _, _) = state {
            close(fd)
            if let path { unlink(path) }
            gate.release()
        }
        state = .idle
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let keepAlive = head.isKeepAlive
            switch gate.admit(head) {
            case .failure(let error):
                state = .refusing(error, keepAlive: keepAlive)
            case .success(let request):
                guard gate.acquire() else {
                    state = .refusing(
                        GitServiceError(
                            status: .serviceUnavailable,
                            message:
                                "this node serves \(gate.service.server.configuration.gitMaximumRequests) Git requests at once ([git] max_requests); retry in a moment",
                            headers: [("Retry-After", "1")]), keepAlive: keepAlive)
                    return
                }
                guard case .rpc = request.kind else {
                    state = .receiving(request, fd: -1, path: nil, bytes: 0, keepAlive: keepAlive)
                    return
                }
                let path = gate.service.workPath("body")
                let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                guard fd >= 0 else {
                    gate.release()
                    state = .refusing(
                        GitServiceError(
                            status: .insufficientStorage,
                            message: "cannot spool the request: \(String(cString: strerror(errno)))"),
                        keepAlive: false)
                    return
                }
                state = .receiving(request, fd: fd, path: path, bytes: 0, keepAlive: keepAlive)
            }
        case .body(var buffer):
            guard case .receiving(let request, let fd, let path, let bytes, let keepAlive) = state, fd >= 0 else {
                return
            }
            let total = bytes + buffer.readableBytes
            let limit = gate.service.server.configuration.gitMaximumPushBytes
            var failure: GitServiceError? = nil
            if total > limit {
                failure = GitServiceError(
                    status: .payloadTooLarge,
                    message: "the request is over \(limit >> 20) MiB ([git] max_push_mib); nothing was changed")
            } else {
                let ok = buffer.readWithUnsafeReadableBytes { pointer -> (Int, Bool) in
                    var offset = 0
                    while offset < pointer.count {
                        let n = write(fd, pointer.baseAddress! + offset, pointer.count - offset)
                        if n < 0 {
                            if errno == EINTR { continue }
                            return (pointer.count, false)
                        }
                        offset += n
                    }
                    return (pointer.count, true)
                }
                if !ok {
                    failure = GitServiceError(
                        status: .insufficientStorage,
                        message: "cannot spool the request: \(String(cString: strerror(errno))); nothing was changed")
                }
            }
            if let failure {
                close(fd)
                if let path { unlink(path) }
                gate.release()
                state = .discarding
                respond(context, failure, keepAlive: false)
                return
            }
            state = .receiving(request, fd: fd, path: path, bytes: total, keepAlive: keepAlive)
        case .end:
            switch state {
            case .idle, .serving, .discarding:
                return
            case .refusing(let error, let keepAlive):
                state = .idle
                respond(context, error, keepAlive: keepAlive)
            case .receiving(let request, let fd, let path, _, let keepAlive):
                if fd >= 0 { close(fd) }
                state = .serving
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                let eventLoop = context.eventLoop
                let responder = GitResponder(channel: context.channel, keepAlive: keepAlive) {
                    // Called on the event loop (GitResponder.end and abort).
                    eventLoop.assertInEventLoop()
                    loopBound.value.state = .idle
                }
                let gate = self.gate
                Thread.detachNewThread {
                    gate.service.serve(request, body: path, responder: responder)
                    if let path { unlink(path) }
                    gate.release()
                }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ error: GitServiceError, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        let body = error.message + "\n"
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        for (name, value) in error.headers { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: error.status, headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// Writes one response from a serving thread: whole (`respond`) or streamed (`begin`,
/// `send`, `end`), waiting while the connection's send buffer is full.
final class GitResponder: @unchecked Sendable {
    private let channel: any Channel
    private let keepAlive: Bool
    private let finished: @Sendable () -> Void
    private(set) var headSent = false

    init(channel: any Channel, keepAlive: Bool, finished: @escaping @Sendable () -> Void) {
        self.channel = channel
        self.keepAlive = keepAlive
        self.finished = finished
    }

    private func head(_ status: HTTPResponseStatus, _ headers: HTTPHeaders) {
        headSent = true
        var headers = headers
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        channel.write(
            HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)),
            promise: nil)
    }

    func respond(
        _ status: HTTPResponseStatus, contentType: String = "text/plain; charset=utf-8", body: [UInt8],
        headers extra: [(String, String)] = []
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        for (name, value) in extra { headers.add(name: name, value: value) }
        head(status, headers)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil)
        end()
    }

    func respond(_ status: HTTPResponseStatus, body: String, headers: [(String, String)]) {
        respond(status, body: Array(body.utf8), headers: headers)
    }

    /// Starts a chunked response.
    func begin(_ status: HTTPResponseStatus, contentType: String, headers extra: [(String, String)]) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        for (name, value) in extra { headers.add(name: name, value: value) }
        head(status, headers)
    }

    /// How long a client may leave the connection's send buffer full before it is closed
    /// (a client that stops reading holds no thread, slot or git process for longer).
    static let stalledSeconds = 60

    /// Sends bytes; false when the connection is gone (or stalled, and then closed).
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard channel.isActive else { return false }
        let written = channel.writeAndFlush(
            HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes))))
        guard !channel.isWritable else { return true }
        let done = DispatchSemaphore(value: 0)
        let failed = Atomic<Bool>(false)
        written.whenComplete { result in
            if case .failure = result { failed.store(true, ordering: .relaxed) }
            done.signal()
        }
        guard done.wait(timeout: .now() + .seconds(Self.stalledSeconds)) == .success else {
            channel.close(promise: nil)
            return false
        }
        return !failed.load(ordering: .relaxed)
    }

    /// Ends the response. The handler is ready for the connection's next request before
    /// the end is written: writing it may deliver a pipelined request at once.
    func end() {
        let channel = self.channel
        let keepAlive = self.keepAlive
        let finished = self.finished
        channel.eventLoop.execute {
            finished()
            channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { result in
                if case .failure = result { channel.close(promise: nil) }
                if !keepAlive { channel.close(promise: nil) }
            }
        }
    }

    /// Ends the response by closing the connection (after a part was sent): git reports a
    /// broken transfer rather than trusting a cut-short answer.
    func abort() {
        let channel = self.channel
        let finished = self.finished
        channel.eventLoop.execute {
            finished()
            channel.close(promise: nil)
        }
    }
}

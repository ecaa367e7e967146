import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The node's HTTP port: `/metrics` (Prometheus text), `/healthz` (the process is alive),
/// `/readyz` (storages open, WAL writable, enough peers reachable to serve). Plain
/// SwiftNIO HTTP/1.1; anything else is 404, a method other than GET 405.
final class HTTPEndpoint: Sendable {
    typealias Route = @Sendable (String) async -> (status: HTTPResponseStatus, contentType: String, body: String)

    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    var port: Int { channel.localAddress?.port ?? 0 }

    /// Connections open at once; more are closed as they arrive (scrapers and probes need
    /// a few; a client opening hundreds cannot hold this node's descriptors).
    static let maximumConnections = 64

    static func start(
        host: String, port: Int, group: MultiThreadedEventLoopGroup, route: @escaping Route
    ) async throws
        -> HTTPEndpoint
    {
        let open = OpenConnections()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard open.count.add(1, ordering: .relaxed).newValue <= maximumConnections else {
                        open.count.subtract(1, ordering: .relaxed)
                        throw HTTPConnectionLimit()
                    }
                    channel.closeFuture.whenComplete { _ in open.count.subtract(1, ordering: .relaxed) }
                    // An idle connection closes after 30 s (a client cannot hold sockets).
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(30)))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPHandler(route: route))
                }
            }
            .bind(host: host, port: port).get()
        return HTTPEndpoint(channel: channel)
    }

    func stop() async { try? await channel.close() }
}

/// Closes a connection over `HTTPEndpoint.maximumConnections`.
private struct HTTPConnectionLimit: Error {}

private final class OpenConnections: Sendable {
    let count = Atomic<Int>(0)
}

private final class HTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let route: HTTPEndpoint.Route
    private var head: HTTPRequestHead?

    init(route: @escaping HTTPEndpoint.Route) { self.route = route }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let keepAlive = head.isKeepAlive
            let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            guard head.method == .GET else {
                respond(context, .methodNotAllowed, "text/plain", "only GET\n", keepAlive: keepAlive)
                return
            }
            let route = self.route
            let promise = context.eventLoop.makePromise(of: (HTTPResponseStatus, String, String).self)
            promise.completeWithTask { await route(path) }
            promise.futureResult.whenSuccess { status, type, body in
                let (handler, context) = loopBound.value
                handler.respond(context, status, type, body, keepAlive: keepAlive)
            }
        }
    }

    private func respond(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ contentType: String, _ body: String,
        keepAlive: Bool
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

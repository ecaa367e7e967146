import Crypto
import NIOCore
import RaftEngine
import Synchronization

/// An authenticated connection to one peer: what `PeerTransport` sends on, from any
/// thread. Its channel handler owns the reading side.
final class PeerConnection: Sendable {
    let channel: any Channel
    let peer: NodeID
    let kind: ConnectionKind
    /// Bytes written to the channel and not yet flushed to the socket.
    let queuedBytes = Atomic<Int>(0)
    private let nextRequest = Atomic<UInt64>(1)
    /// Set when the channel closed: nothing is written after.
    private let isClosed = Atomic<Bool>(false)

    private struct Pending {
        var closed = false
        var waiting: [UInt64: CheckedContinuation<Result<BulkResponse, BulkError>, Never>] = [:]
        /// Requests of the peer this node is serving: cancelled when the connection closes.
        var serving: [UInt64: Task<Void, Never>] = [:]
    }
    private let pending = Mutex(Pending())

    init(channel: any Channel, peer: NodeID, kind: ConnectionKind) {
        self.channel = channel
        self.peer = peer
        self.kind = kind
    }

    /// Writes one message; `completion` runs when it left the process (or failed). The
    /// sealer in the pipeline adds the integrity tag.
    func write(_ type: PeerMessageType, _ parts: [UInt8]..., completion: (@Sendable (Bool) -> Void)? = nil) {
        guard !isClosed.load(ordering: .acquiring) else {
            completion?(false)
            return
        }
        let length = 1 + parts.reduce(0) { $0 + $1.count }
        var buffer = channel.allocator.buffer(capacity: 4 + length + PeerSealer.tagBytes)
        buffer.writeInteger(UInt32(length))
        buffer.writeInteger(type.rawValue)
        for part in parts { buffer.writeBytes(part) }
        guard let completion else {
            channel.writeAndFlush(buffer, promise: nil)
            return
        }
        channel.writeAndFlush(buffer).whenComplete { result in
            if case .success = result { completion(true) } else { completion(false) }
        }
    }

    /// Sends a bulk request and waits for its answer, for the connection to close, for the
    /// deadline, or for the calling task to be cancelled (all but the first: unreachable).
    func request(_ body: [UInt8], bound: Int, deadlineMilliseconds: Int64) async -> Result<BulkResponse, BulkError> {
        let id = nextRequest.add(1, ordering: .relaxed).oldValue
        let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(deadlineMilliseconds)) { [self] in
            resolve(id, .failure(.unreachable(peer)))
        }
        defer { timeout.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let refusal: BulkError? = pending.withLock { state in
                    if state.closed { return .unreachable(peer) }
                    if state.waiting.count >= bound { return .busy(peer) }
                    state.waiting[id] = continuation
                    return nil
                }
                if let refusal {
                    continuation.resume(returning: .failure(refusal))
                    return
                }
                if Task.isCancelled {
                    resolve(id, .failure(.unreachable(peer)))
                    return
                }
                write(.bulkRequest, Self.u64(id), body)
            }
        } onCancel: {
            resolve(id, .failure(.unreachable(peer)))
        }
    }

    /// Resumes the request `id` if it still waits (each one exactly once).
    @discardableResult
    private func resolve(_ id: UInt64, _ result: Result<BulkResponse, BulkError>) -> Bool {
        guard let continuation = pending.withLock({ $0.waiting.removeValue(forKey: id) }) else { return false }
        continuation.resume(returning: result)
        return true
    }

    /// Hands an answer to the request waiting for it. False when none waits: a late answer
    /// (after its deadline) is dropped, but one to an ID never used is a broken peer.
    func answer(_ id: UInt64, _ response: BulkResponse) -> Bool {
        resolve(id, .success(response)) || id < nextRequest.load(ordering: .relaxed)
    }

    /// Tracks a served request, so that closing the connection cancels it. False when the
    /// connection closed already (the task is cancelled at once).
    func serving(_ id: UInt64, _ task: Task<Void, Never>) {
        let open = pending.withLock { state in
            if !state.closed { state.serving[id] = task }
            return !state.closed
        }
        if !open { task.cancel() }
    }

    func served(_ id: UInt64) { _ = pending.withLock { $0.serving.removeValue(forKey: id) } }

    /// The connection closed: every waiting request fails, served ones are cancelled, and
    /// no new one is taken.
    func closed() {
        isClosed.store(true, ordering: .releasing)
        let (waiting, serving) = pending.withLock { state in
            state.closed = true
            defer {
                state.waiting = [:]
                state.serving = [:]
            }
            return (state.waiting, state.serving)
        }
        for (_, continuation) in waiting { continuation.resume(returning: .failure(.unreachable(peer))) }
        for (_, task) in serving { task.cancel() }
    }

    static func u64(_ value: UInt64) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }
}

/// Adds each outgoing message's integrity tag once the handshake has set the session key:
/// a truncated HMAC-SHA256 over the direction, a per-direction sequence number, the type
/// and the body. Runs on the channel's event loop, so sequence numbers follow wire order.
/// Before the key is set (the handshake's own messages) it only fills in the length.
final class PeerSealer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    static let tagBytes = 16

    private var key: SymmetricKey?
    private var direction: UInt8 = 0
    private var sequence: UInt64 = 0

    func seal(key: SymmetricKey, direction: UInt8) {
        self.key = key
        self.direction = direction
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = unwrapOutboundIn(data)
        if let key {
            let tag = PeerSealer.tag(
                key: key, direction: direction, sequence: sequence,
                message: buffer.readableBytesView.dropFirst(4))
            sequence += 1
            buffer.writeBytes(tag)
            buffer.setInteger(UInt32(buffer.readableBytes - 4), at: buffer.readerIndex)
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    static func tag(key: SymmetricKey, direction: UInt8, sequence: UInt64, message: some Collection<UInt8>) -> [UInt8] {
        var mac = HMAC<Crypto.SHA256>(key: key)
        mac.update(data: [direction])
        withUnsafeBytes(of: sequence.bigEndian) { mac.update(data: Array($0)) }
        if message.withContiguousStorageIfAvailable({ mac.update(data: UnsafeRawBufferPointer($0)) }) == nil {
            mac.update(data: Array(message))
        }
        return Array(Array(mac.finalize()).prefix(tagBytes))
    }
}

/// One length-prefixed message off the wire.
struct PeerWireMessage {
    var type: UInt8
    var body: ByteBuffer
}

/// Why the byte stream of a connection is broken: the connection is closed.
struct PeerFramingError: Error {
    let cause: RefusalCause
    let detail: String
}

/// Splits the byte stream into messages, refusing an announced length over the bound
/// before buffering any of it.
struct PeerMessageDecoder: ByteToMessageDecoder {
    typealias InboundOut = PeerWireMessage
    /// Small until the handshake completes (`PeerHandshake.maximumHandshakeBytes`), so a
    /// stranger cannot make this node buffer large messages.
    let limit: DecoderLimit
    var maximumBytes: Int { limit.bytes }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length >= 1 else { throw PeerFramingError(cause: .malformedMessage, detail: "a message of length 0") }
        guard Int(length) <= maximumBytes else {
            throw PeerFramingError(
                cause: .oversizedMessage, detail: "a message of \(length) bytes; the limit is \(maximumBytes)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let type = buffer.readInteger(as: UInt8.self)!
        let body = buffer.readSlice(length: Int(length) - 1)!
        context.fireChannelRead(wrapInboundOut(PeerWireMessage(type: type, body: body)))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let left = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: left)
            throw PeerFramingError(
                cause: .truncatedMessage, detail: "the connection ended inside a message (\(left) bytes)")
        }
        return .needMoreData
    }
}

/// The largest message a connection's decoder takes now (event-loop confined).
final class DecoderLimit {
    var bytes: Int
    init(_ bytes: Int) { self.bytes = bytes }
}

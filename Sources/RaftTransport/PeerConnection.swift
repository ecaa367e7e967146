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
    /// Bulk requests served for the peer right now.
    let serving = Atomic<Int>(0)
    private let nextRequest = Atomic<UInt64>(1)
    /// Set when the channel closed: nothing is written after (a write to a channel whose
    /// event loop has shut down would never complete).
    private let isClosed = Atomic<Bool>(false)

    private struct Pending {
        var closed = false
        var waiting: [UInt64: CheckedContinuation<Result<BulkResponse, BulkError>, Never>] = [:]
    }
    private let pending = Mutex(Pending())

    init(channel: any Channel, peer: NodeID, kind: ConnectionKind) {
        self.channel = channel
        self.peer = peer
        self.kind = kind
    }

    /// Writes one message; `completion` runs when it left the process (or failed).
    func write(_ type: PeerMessageType, _ parts: [UInt8]..., completion: (@Sendable (Bool) -> Void)? = nil) {
        guard !isClosed.load(ordering: .acquiring) else {
            completion?(false)
            return
        }
        let length = 1 + parts.reduce(0) { $0 + $1.count }
        var buffer = channel.allocator.buffer(capacity: 4 + length)
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

    /// Sends a bulk request and waits for its answer, or for the connection to close.
    func request(_ body: [UInt8], bound: Int) async -> Result<BulkResponse, BulkError> {
        let id = nextRequest.add(1, ordering: .relaxed).oldValue
        return await withCheckedContinuation { continuation in
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
            write(.bulkRequest, Self.u64(id), body)
        }
    }

    /// Hands an answer to the request waiting for it. False when none waits (a peer that
    /// answers what was never asked is broken).
    func answer(_ id: UInt64, _ response: BulkResponse) -> Bool {
        guard let continuation = pending.withLock({ $0.waiting.removeValue(forKey: id) }) else { return false }
        continuation.resume(returning: .success(response))
        return true
    }

    /// The connection closed: every waiting request fails, and no new one is taken.
    func closed() {
        isClosed.store(true, ordering: .releasing)
        let waiting = pending.withLock { state in
            state.closed = true
            defer { state.waiting = [:] }
            return state.waiting
        }
        for (_, continuation) in waiting { continuation.resume(returning: .failure(.unreachable(peer))) }
    }

    static func u64(_ value: UInt64) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
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
    let maximumBytes: Int

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

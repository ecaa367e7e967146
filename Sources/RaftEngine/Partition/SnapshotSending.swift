import RaftConsensus

// The leader side's transport helpers of `PartitionSnapshots`: pieces in flight, and the
// node-wide bandwidth limit.

/// Sends a transfer's pieces in order, a few in flight (the receiver writes them in order):
/// `send` returns once this one is on its way.
final class PiecePipe: @unchecked Sendable {
    let host: NodeHost
    let node: NodeID
    let partition: PartitionKey
    let transfer: UInt64
    private var sequence: UInt32 = 0
    private let lock = ConditionLock()
    private var inFlight = 0
    private var refusal: String?
    /// Pieces in flight at once (after the first, which opens the transfer, is answered).
    static let window = 3

    init(host: NodeHost, node: NodeID, partition: PartitionKey, transfer: UInt64) {
        self.host = host
        self.node = node
        self.partition = partition
        self.transfer = transfer
    }

    /// Waits for room in the window (for the first piece's answer before any other), then
    /// starts this one; the first refusal so far.
    func send(_ bytes: [UInt8], message: Message?, isLast: Bool) -> String? {
        let limit = sequence <= 1 ? 1 : Self.window
        let refused: String? = lock.withLock {
            while inFlight >= limit && refusal == nil { lock.wait() }
            return refusal
        }
        if let refused { return refused }
        let chunk = SnapshotChunk(
            partition: partition, transfer: transfer, sequence: sequence, message: message, bytes: bytes,
            isLast: isLast)
        sequence += 1
        lock.withLock { inFlight += 1 }
        let host = host
        let node = node
        Task {
            let answer: String?
            do {
                switch try await host.bulkRequest(.snapshotChunk(chunk), to: node) {
                case .stored: answer = nil
                case .refused(let reason): answer = "node \(node) refused: \(reason)"
                case .data: answer = "node \(node) answered a snapshot piece with data"
                }
            } catch {
                answer = "\(error)"
            }
            lock.withLock {
                inFlight -= 1
                if refusal == nil { refusal = answer }
                lock.broadcast()
            }
        }
        return nil
    }

    /// Waits for every piece in flight; the first refusal.
    func finish() -> String? {
        lock.withLock {
            while inFlight > 0 { lock.wait() }
            return refusal
        }
    }
}

/// A token bucket shared by a node's snapshot sends.
final class Bandwidth: @unchecked Sendable {
    let bytesPerSecond: UInt64
    private let lock = ConditionLock()
    private var availableAt = 0

    init(bytesPerSecond: UInt64) { self.bytesPerSecond = max(1, bytesPerSecond) }

    /// Waits until `bytes` more fit under the rate.
    func take(_ bytes: Int) {
        let cost = Int(UInt64(bytes) * 1_000_000_000 / bytesPerSecond)
        let now = MonotonicClock.system.nanoseconds
        let wait: Int = lock.withLock {
            let start = max(availableAt, now - 100_000_000)
            availableAt = start + cost
            return start - now
        }
        var remaining = wait
        while remaining > 0 {
            usleep(UInt32(min(remaining / 1_000, 1_000_000)))
            remaining -= 1_000_000_000
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

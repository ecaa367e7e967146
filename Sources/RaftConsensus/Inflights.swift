/// Bounded window of appends sent to one follower but not yet acknowledged, limited by
/// message count AND payload bytes. Each slot remembers the last index of an append, so an
/// acknowledgement of index i frees every slot ≤ i. Implemented as a ring buffer so the
/// steady-state replication path does not allocate.
public struct Inflights: Sendable {
    private var indexes: [LogIndex]
    private var sizes: [Int]
    private var start = 0
    public private(set) var count = 0
    public private(set) var bytes = 0
    /// Maximum number of appends in flight.
    public let capacity: Int
    /// Maximum payload bytes in flight (0 = unlimited).
    public let maxBytes: Int

    public init(capacity: Int, maxBytes: Int) {
        precondition(capacity > 0, "inflight capacity must be positive")
        self.capacity = capacity
        self.maxBytes = maxBytes
        indexes = []
        sizes = []
    }

    /// No more appends may be sent until some are acknowledged.
    public var isFull: Bool { count == capacity || (maxBytes > 0 && bytes >= maxBytes) }

    /// Records an append whose last entry is `index`, carrying `size` payload bytes.
    /// Indexes must be added in increasing order.
    public mutating func add(_ index: LogIndex, bytes size: Int) {
        precondition(!isFull, "adding to a full inflights window")
        if indexes.isEmpty {
            indexes = Array(repeating: .zero, count: capacity)
            sizes = Array(repeating: 0, count: capacity)
        }
        var slot = start + count
        if slot >= capacity { slot -= capacity }
        indexes[slot] = index
        sizes[slot] = size
        count += 1
        bytes += size
    }

    /// Frees every append whose last index is ≤ `index`.
    public mutating func freeLE(_ index: LogIndex) {
        while count > 0 && indexes[start] <= index {
            bytes -= sizes[start]
            start += 1
            if start == capacity { start = 0 }
            count -= 1
        }
        if count == 0 { start = 0 }
    }

    /// Frees the oldest append (used when a heartbeat proves the follower is alive but the
    /// window is stuck full, so that replication can make progress again).
    public mutating func freeFirstOne() {
        guard count > 0 else { return }
        freeLE(indexes[start])
    }

    public mutating func reset() {
        start = 0
        count = 0
        bytes = 0
    }

    /// Frees the ring's storage when nothing is in flight (quiesced groups); the next `add`
    /// allocates it again.
    mutating func releaseStorage() {
        guard count == 0, !indexes.isEmpty else { return }
        indexes = []
        sizes = []
        start = 0
    }
}

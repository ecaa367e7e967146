/// The context of a ReadIndex request, which the leader echoes in its heartbeats and answer.
/// It is unique across the nodes of a cluster, the shards of a node and the starts of a node
/// (the boot value grows with each): the leader's read queue tells reads apart by it, so two
/// reads never share one (one would be dropped as a duplicate), and a heartbeat answer to an
/// earlier read, arriving late, never confirms a later one.
///
/// ```
/// node slot u16 | shard u16 | boot u64 | counter u64     (20 bytes, little-endian)
/// ```
struct ReadContext: Equatable {
    var nodeSlot: Int
    var shard: Int
    var boot: UInt64
    var counter: UInt64

    static let size = 20

    var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.size)
        func put(_ value: UInt64, _ count: Int) {
            var v = value
            for _ in 0..<count {
                out.append(UInt8(v & 0xFF))
                v >>= 8
            }
        }
        put(UInt64(nodeSlot), 2)
        put(UInt64(shard), 2)
        put(boot, 8)
        put(counter, 8)
        return out
    }

    init(nodeSlot: Int, shard: Int, boot: UInt64, counter: UInt64) {
        precondition(nodeSlot >= 0 && nodeSlot <= 0xFFFF && shard >= 0 && shard <= 0xFFFF)
        self.nodeSlot = nodeSlot
        self.shard = shard
        self.boot = boot
        self.counter = counter
    }

    /// Decodes a context; nil for bytes of another shape (not ours to answer).
    init?(bytes: [UInt8]) {
        guard bytes.count == Self.size else { return nil }
        func get(_ offset: Int, _ count: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<count { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
            return v
        }
        nodeSlot = Int(get(0, 2))
        shard = Int(get(2, 2))
        boot = get(4, 8)
        counter = get(12, 8)
    }
}

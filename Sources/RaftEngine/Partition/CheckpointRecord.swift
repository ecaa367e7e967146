import RaftConsensus

/// A partition replica's durable checkpoint: its applied index and its key-value pairs as
/// of that index. Two slot files, `checkpoint.0` and `checkpoint.1`, are written
/// alternately in place: a round writes the slot that does not hold the newest durable
/// record, so a write torn by a crash leaves the other one whole, and the newest record
/// with a valid checksum is the checkpoint.
///
/// In place, not by a new file and a rename: a round of a thousand partitions created a
/// thousand inodes and evicted a thousand more each second, and that was the largest CPU
/// cost of a node under load (measured with perf, docs/BENCHMARKS.md).
///
/// Layout: u8 version (1), u64 sequence, u64 applied index, u32 length, the encoded values
/// (`PartitionStateMachine.encodeValues`), u32 CRC-32C of everything before it. Bytes after
/// the record (left by a longer earlier record in the slot) are ignored.
struct CheckpointRecord: Equatable {
    var sequence: UInt64
    var applied: LogIndex
    var values: [UInt8]

    static let version: UInt8 = 1
    static let slots = 2
    static func slotName(_ slot: Int) -> String { "checkpoint.\(slot)" }

    func encoded() -> [UInt8] {
        var w = ByteWriter(version: Self.version)
        w.u64(sequence)
        w.u64(applied.rawValue)
        w.u32(UInt32(values.count))
        w.append(values)
        let crc = CRC32C.checksum(w.bytes)
        w.u32(crc)
        return w.bytes
    }

    /// Nil for anything but a whole record (short, another version, a bad checksum).
    init?(decoding bytes: [UInt8]) {
        var r = ByteReader(bytes)
        guard (try? r.expectVersion(Self.version)) != nil, let sequence = try? r.u64(), let applied = try? r.u64(),
            let length = try? r.u32(), Int(length) <= bytes.count, let values = try? r.take(Int(length))
        else { return nil }
        let end = 1 + 8 + 8 + 4 + Int(length)
        guard let stored = try? r.u32(), CRC32C.checksum(Array(bytes[..<end])) == stored else { return nil }
        self.init(sequence: sequence, applied: LogIndex(applied), values: values)
    }

    init(sequence: UInt64, applied: LogIndex, values: [UInt8]) {
        self.sequence = sequence
        self.applied = applied
        self.values = values
    }

    /// The newest whole record among the slots' contents (nil: a slot file that does not
    /// exist), and its slot. Throws when every slot exists and none is whole: that is
    /// damage, not a crash (a round only ever writes the slot without the newest record).
    static func newest(_ slots: [[UInt8]?], in directory: String) throws(StateMachineError) -> (Self, slot: Int)? {
        var best: (Self, slot: Int)?
        for (slot, bytes) in slots.enumerated() {
            guard let bytes, let record = Self(decoding: bytes) else { continue }
            if best == nil || record.sequence > best!.0.sequence { best = (record, slot) }
        }
        if best == nil && !slots.isEmpty && slots.allSatisfy({ $0 != nil }) {
            throw StateMachineError(
                "both checkpoint files of \(directory) (checkpoint.0, checkpoint.1) are damaged: the disk lost data; restore this replica from another one"
            )
        }
        return best
    }
}

import RaftConsensus

/// The on-disk format of the shared WAL, version 1. See docs/WAL.md for the drawing.
///
/// A segment is a preallocated file `<seq:016x>.wal`. It starts with a 64-byte header and
/// holds batches back to back; the rest of the file is zeros from fallocate. Each batch is
/// one group-commit unit: a 32-byte batch header, then its records, each 8-byte aligned.
///
/// Only the newest batch can be torn (the writer submits batch k+1 only after batch k's
/// fdatasync completed), which is what lets recovery tell a torn tail from corruption.
enum WALFormat {
    static let version: UInt32 = 1
    static let segmentMagic: UInt64 = 0x3130_4C41_5754_4652  // "RFTWAL01" little-endian
    static let segmentHeaderSize = 64
    static let batchMagic: UInt32 = 0xB47C_0001
    static let batchHeaderSize = 32
    static let recordHeaderSize = 40
    static let alignment = 8
    /// A record's payload is at most this large (a larger write is refused before it
    /// reaches the log; packfiles travel as attachments, not log payloads).
    static let maxPayloadSize = 64 << 20

    @inline(__always)
    static func aligned(_ n: Int) -> Int { (n + alignment - 1) & ~(alignment - 1) }

    /// Bytes a record with `payload` bytes occupies, padding included.
    @inline(__always)
    static func recordSize(payload: Int) -> Int { aligned(recordHeaderSize + payload) }

    static func segmentName(_ sequence: UInt64) -> String {
        let hex = String(sequence, radix: 16)
        return String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".wal"
    }

    static func segmentSequence(fromName name: String) -> UInt64? {
        guard name.hasSuffix(".wal"), name.count == 20 else { return nil }
        return UInt64(name.prefix(16), radix: 16)
    }
}

/// The kinds of WAL record.
public enum WALRecordType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// A log entry of a group: term, index, payload.
    case entry = 1
    /// A group's hard state: term, commit (in `index`), vote (payload, 8 bytes).
    case hardState = 2
    /// The group's entries from `index` on are discarded (a conflicting suffix); the next
    /// entries continue from `index`. Informational: replay also truncates implicitly when
    /// an entry arrives at or below the last index.
    case truncate = 3
    /// The group's entries up to and including `index` (whose term is `term`) are covered by
    /// a snapshot; the log starts at `index + 1`.
    case compact = 4
    /// The group no longer lives on this storage: forget all of it.
    case removeGroup = 5

    public var description: String {
        switch self {
        case .entry: "entry"
        case .hardState: "hard-state"
        case .truncate: "truncate"
        case .compact: "compact"
        case .removeGroup: "remove-group"
        }
    }
}

/// A record header, decoded.
///
/// ```
///  0      4        8     9     10      12      16      24      32      40
///  ├──────┼────────┼─────┼─────┼───────┼───────┼───────┼───────┼───────┼─────────┐
///  │crc32c│ length │type │kind │  0    │   0   │ group │ term  │ index │ payload │ pad to 8
///  └──────┴────────┴─────┴─────┴───────┴───────┴───────┴───────┴───────┴─────────┘
///  crc32c covers bytes 4 ..< the padded end (40 + length rounded up to 8)
/// ```
struct RecordHeader: Equatable {
    var length: Int
    var type: WALRecordType
    var kind: UInt8
    var group: GroupID
    var term: Term
    var index: LogIndex

    func encode(into buffer: UnsafeMutableRawPointer, payload: UnsafeRawBufferPointer) {
        LittleEndian.store(UInt32(length), buffer, at: 4)
        buffer.storeBytes(of: type.rawValue, toByteOffset: 8, as: UInt8.self)
        buffer.storeBytes(of: kind, toByteOffset: 9, as: UInt8.self)
        LittleEndian.store(UInt16(0), buffer, at: 10)
        LittleEndian.store(UInt32(0), buffer, at: 12)
        LittleEndian.store(group.rawValue, buffer, at: 16)
        LittleEndian.store(term.rawValue, buffer, at: 24)
        LittleEndian.store(index.rawValue, buffer, at: 32)
        if payload.count > 0 {
            (buffer + WALFormat.recordHeaderSize).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        let total = WALFormat.recordSize(payload: payload.count)
        let padding = total - WALFormat.recordHeaderSize - payload.count
        if padding > 0 {
            (buffer + WALFormat.recordHeaderSize + payload.count).initializeMemory(
                as: UInt8.self, repeating: 0, count: padding)
        }
        // The padding is covered too, so that every byte of a record is checked.
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: buffer + 4, count: total - 4))
        LittleEndian.store(crc, buffer, at: 0)
    }

    /// Decodes and verifies the record at the start of `bytes`; nil when the bytes are not
    /// a whole valid record (bad checksum, unknown type, length past the end).
    static func decode(_ bytes: UnsafeRawBufferPointer) -> RecordHeader? {
        guard bytes.count >= WALFormat.recordHeaderSize, let base = bytes.baseAddress else { return nil }
        let length = Int(LittleEndian.load(UInt32.self, base, at: 4))
        guard length <= WALFormat.maxPayloadSize, WALFormat.recordSize(payload: length) <= bytes.count else {
            return nil
        }
        guard let type = WALRecordType(rawValue: base.load(fromByteOffset: 8, as: UInt8.self)) else { return nil }
        guard LittleEndian.load(UInt16.self, base, at: 10) == 0, LittleEndian.load(UInt32.self, base, at: 12) == 0
        else {
            return nil
        }
        let stored = LittleEndian.load(UInt32.self, base, at: 0)
        let crc = CRC32C.checksum(
            UnsafeRawBufferPointer(start: base + 4, count: WALFormat.recordSize(payload: length) - 4))
        guard stored == crc else { return nil }
        return RecordHeader(
            length: length,
            type: type,
            kind: base.load(fromByteOffset: 9, as: UInt8.self),
            group: GroupID(LittleEndian.load(UInt64.self, base, at: 16)),
            term: Term(LittleEndian.load(UInt64.self, base, at: 24)),
            index: LogIndex(LittleEndian.load(UInt64.self, base, at: 32))
        )
    }
}

/// A batch header, decoded.
///
/// ```
///  0            4        8            16           20           24        32
///  ├────────────┼────────┼────────────┼────────────┼────────────┼─────────┤
///  │ crc32c     │ magic  │ batch seq  │ body bytes │ records    │ 0       │
///  └────────────┴────────┴────────────┴────────────┴────────────┴─────────┘
///  crc32c covers the segment's salt, then bytes 4 ..< 32; each record carries its own checksum
/// ```
struct BatchHeader: Equatable {
    var sequence: UInt64
    var bodyLength: Int
    var recordCount: Int

    func encode(into buffer: UnsafeMutableRawPointer, salt: UInt64) {
        LittleEndian.store(WALFormat.batchMagic, buffer, at: 4)
        LittleEndian.store(sequence, buffer, at: 8)
        LittleEndian.store(UInt32(bodyLength), buffer, at: 16)
        LittleEndian.store(UInt32(recordCount), buffer, at: 20)
        LittleEndian.store(UInt64(0), buffer, at: 24)
        LittleEndian.store(Self.checksum(buffer, salt: salt), buffer, at: 0)
    }

    /// The header checksum, seeded with the segment's random salt: bytes a client puts in a
    /// payload cannot pass for a batch header (but by a 2^-32 chance: they do not know the
    /// salt), so they cannot make recovery mistake a torn tail for corruption.
    static func checksum(_ base: UnsafeRawPointer, salt: UInt64) -> UInt32 {
        let seeded = withUnsafeBytes(of: salt.littleEndian) { CRC32C.checksum($0) }
        return CRC32C.checksum(UnsafeRawBufferPointer(start: base + 4, count: 28), extending: seeded)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, salt: UInt64) -> BatchHeader? {
        guard bytes.count >= WALFormat.batchHeaderSize, let base = bytes.baseAddress else { return nil }
        guard LittleEndian.load(UInt32.self, base, at: 4) == WALFormat.batchMagic else { return nil }
        guard LittleEndian.load(UInt32.self, base, at: 0) == checksum(base, salt: salt) else { return nil }
        guard LittleEndian.load(UInt64.self, base, at: 24) == 0 else { return nil }
        return BatchHeader(
            sequence: LittleEndian.load(UInt64.self, base, at: 8),
            bodyLength: Int(LittleEndian.load(UInt32.self, base, at: 16)),
            recordCount: Int(LittleEndian.load(UInt32.self, base, at: 20))
        )
    }

    /// True when the bytes are all zero: the untouched, preallocated end of a segment.
    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= WALFormat.batchHeaderSize, let base = bytes.baseAddress else { return false }
        return LittleEndian.load(UInt64.self, base, at: 0) == 0 && LittleEndian.load(UInt64.self, base, at: 8) == 0
            && LittleEndian.load(UInt64.self, base, at: 16) == 0 && LittleEndian.load(UInt64.self, base, at: 24) == 0
    }
}

/// The segment header.
///
/// ```
///  0        8         12          16         24       32        60      64
///  ├────────┼─────────┼───────────┼──────────┼────────┼─────────┼───────┤
///  │ magic  │ version │ hdr size  │ seg seq  │ salt   │ 0 …     │crc32c │
///  └────────┴─────────┴───────────┴──────────┴────────┴─────────┴───────┘
///  crc32c covers bytes 0 ..< 60
/// ```
struct SegmentHeader: Equatable {
    var sequence: UInt64
    /// Random, chosen when the segment is created; seeds every batch header checksum in it.
    var salt: UInt64

    func encode(into buffer: UnsafeMutableRawPointer) {
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: WALFormat.segmentHeaderSize)
        LittleEndian.store(WALFormat.segmentMagic, buffer, at: 0)
        LittleEndian.store(WALFormat.version, buffer, at: 8)
        LittleEndian.store(UInt32(WALFormat.segmentHeaderSize), buffer, at: 12)
        LittleEndian.store(sequence, buffer, at: 16)
        LittleEndian.store(salt, buffer, at: 24)
        LittleEndian.store(CRC32C.checksum(UnsafeRawBufferPointer(start: buffer, count: 60)), buffer, at: 60)
    }

    enum DecodeFailure: Error { case notAWALSegment, unsupportedVersion(UInt32), damaged }

    static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<SegmentHeader, DecodeFailure> {
        guard bytes.count >= WALFormat.segmentHeaderSize, let base = bytes.baseAddress else {
            return .failure(.damaged)
        }
        guard LittleEndian.load(UInt64.self, base, at: 0) == WALFormat.segmentMagic else {
            return .failure(.notAWALSegment)
        }
        guard
            LittleEndian.load(UInt32.self, base, at: 60)
                == CRC32C.checksum(UnsafeRawBufferPointer(start: base, count: 60))
        else { return .failure(.damaged) }
        let version = LittleEndian.load(UInt32.self, base, at: 8)
        guard version == WALFormat.version else { return .failure(.unsupportedVersion(version)) }
        return .success(
            SegmentHeader(
                sequence: LittleEndian.load(UInt64.self, base, at: 16),
                salt: LittleEndian.load(UInt64.self, base, at: 24)))
    }
}

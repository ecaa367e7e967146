import RaftConsensus

/// The stream a leader sends a follower to install a partition at a log index: a
/// versioned header, then the snapshot's directories and files, then a trailer. Big-endian.
///
/// ```
/// header   "RSNP" | version u8 (1) | cluster ID (16) | partition key (u16 length, bytes)
///          | snapshot ID u64 | index u64 | term u64 | configuration (u16 length, bytes)
///          | items u32 | file bytes u64 | CRC-32C u32 of the header before it
/// 'D'      path (u16 length, bytes) | mode u32                      a directory
/// 'F'      path | mode u32 | size u64                              a file, then its chunks:
/// 'C'      flags u8 (0 stored, 1 zstd) | raw length u32 | stored length u32
///          | CRC-32C u32 of the stored bytes | stored bytes
/// 'E'      CRC-32C u32 of the file's contents                    the file is whole
/// 'T'      items u32 | file bytes u64 | CRC-32C u32 of every byte of the stream before it
/// ```
///
/// Directories come before anything inside them. Each chunk is its own zstd frame (or is
/// stored as is when compression does not make it smaller: packs are compressed already),
/// so a chunk can be checked and decoded alone and memory stays bounded by the chunk size.
/// The trailer's checksum covers every byte, item headers included, so any damage the
/// per-chunk and per-file checksums do not see is still caught before anything is used.
public enum SnapshotFormat {
    static let magic: [UInt8] = Array("RSNP".utf8)
    static let version: UInt8 = 1
    /// The largest chunk of file data before compression.
    public static let maximumChunkBytes = 4 << 20
    /// The most items (directories and files) a stream may declare.
    public static let maximumItems: UInt32 = 16 << 20
    /// The largest partition a stream may carry.
    public static let maximumTotalBytes: UInt64 = 16 << 40

    enum Tag: UInt8 {
        case directory = 0x44  // D
        case file = 0x46  // F
        case chunk = 0x43  // C
        case fileEnd = 0x45  // E
        case trailer = 0x54  // T
    }
}

/// What a snapshot stream is of: checked by the receiver before it writes a byte.
public struct SnapshotHeader: Equatable, Sendable, CustomStringConvertible {
    public var cluster: ClusterID
    public var partition: PartitionKey
    /// Chosen by the sender: tells two transfers of the same index apart.
    public var snapshotID: UInt64
    public var index: LogIndex
    public var term: Term
    public var confState: ConfState
    /// Directories and files that follow.
    public var items: UInt32
    /// The sum of the files' sizes.
    public var totalBytes: UInt64

    public init(
        cluster: ClusterID, partition: PartitionKey, snapshotID: UInt64, index: LogIndex, term: Term,
        confState: ConfState, items: UInt32, totalBytes: UInt64
    ) {
        self.cluster = cluster
        self.partition = partition
        self.snapshotID = snapshotID
        self.index = index
        self.term = term
        self.confState = confState
        self.items = items
        self.totalBytes = totalBytes
    }

    public var description: String {
        "snapshot \(snapshotID) of \(partition) at \(index) (term \(term)): \(items) items, \(totalBytes) bytes"
    }

    func encoded() -> [UInt8] {
        var out = SnapshotFormat.magic
        out.append(SnapshotFormat.version)
        out.append(contentsOf: cluster.bytes)
        let key = partition.encoded
        out.appendBigEndian(UInt16(key.count))
        out.append(contentsOf: key)
        out.appendBigEndian(snapshotID)
        out.appendBigEndian(index.rawValue)
        out.appendBigEndian(term.rawValue)
        let conf = (try? StoredConfState(confState))?.encoded ?? []
        out.appendBigEndian(UInt16(conf.count))
        out.append(contentsOf: conf)
        out.appendBigEndian(items)
        out.appendBigEndian(totalBytes)
        out.appendBigEndian(CRC32C.checksum(out))
        return out
    }

    /// Decodes a header from the front of `bytes`: nil when more bytes are needed, the
    /// header and its length otherwise.
    static func decode(_ bytes: ArraySlice<UInt8>) throws(SnapshotStreamError) -> (SnapshotHeader, Int)? {
        var r = SliceReader(bytes)
        guard let magic = r.take(4) else { return nil }
        guard Array(magic) == SnapshotFormat.magic else { throw .damaged("not a snapshot stream (no RSNP magic)") }
        guard let version = r.u8() else { return nil }
        guard version == SnapshotFormat.version else {
            throw .damaged("snapshot stream version \(version); this node reads version \(SnapshotFormat.version)")
        }
        guard let cluster = r.take(16), let keyLength = r.u16() else { return nil }
        guard let key = r.take(Int(keyLength)), let id = r.u64(), let index = r.u64(), let term = r.u64(),
            let confLength = r.u16()
        else { return nil }
        guard let conf = r.take(Int(confLength)), let items = r.u32(), let total = r.u64() else { return nil }
        let covered = r.offset
        guard let crc = r.u32() else { return nil }
        guard CRC32C.checksum(Array(bytes.prefix(covered))) == crc else {
            throw .damaged("the snapshot header's checksum does not match")
        }
        let header: SnapshotHeader
        do {
            header = SnapshotHeader(
                cluster: try ClusterID(bytes: cluster), partition: try PartitionKey(decoding: key), snapshotID: id,
                index: LogIndex(index), term: Term(term),
                confState: ConfState(try StoredConfState(decoding: Array(conf))), items: items, totalBytes: total)
        } catch {
            throw .damaged("the snapshot header does not decode: \(error)")
        }
        guard items <= SnapshotFormat.maximumItems, total <= SnapshotFormat.maximumTotalBytes else {
            throw .damaged("a snapshot of \(items) items and \(total) bytes is over this node's bounds")
        }
        return (header, r.offset)
    }
}

/// Why a snapshot stream was refused. The receiver's state is unchanged either way.
public enum SnapshotStreamError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not a whole, intact stream.
    case damaged(String)
    /// An intact stream this receiver must not take (another cluster, another partition, an
    /// index it does not need).
    case foreign(String)
    /// Writing what arrived failed.
    case io(String)

    public var description: String {
        switch self {
        case .damaged(let why): "damaged snapshot stream: \(why)"
        case .foreign(let why): "snapshot refused: \(why)"
        case .io(let why): "writing the snapshot failed: \(why)"
        }
    }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

/// Reads big-endian fields from the front of a slice; nil when the slice ends first.
struct SliceReader {
    let bytes: ArraySlice<UInt8>
    private(set) var offset = 0

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
        guard bytes.count - offset >= count else { return nil }
        let start = bytes.startIndex + offset
        offset += count
        return bytes[start..<(start + count)]
    }

    mutating func u8() -> UInt8? { take(1).map { $0.first! } }
    mutating func u16() -> UInt16? { integer(2).map { UInt16($0) } }
    mutating func u32() -> UInt32? { integer(4).map { UInt32($0) } }
    mutating func u64() -> UInt64? { integer(8) }

    private mutating func integer(_ width: Int) -> UInt64? {
        guard let raw = take(width) else { return nil }
        var value: UInt64 = 0
        for byte in raw { value = value << 8 | UInt64(byte) }
        return value
    }
}

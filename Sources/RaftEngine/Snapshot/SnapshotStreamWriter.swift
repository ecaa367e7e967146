import CRaftIO

/// One directory or file of a snapshot, as the sender lists it.
public struct SnapshotItem: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case directory
        /// A file of `size` bytes, read from `source` (an absolute path on the sender).
        case file(size: UInt64, source: String)
    }

    /// Where it goes, relative to the snapshot's root.
    public var path: RelativePath
    /// Permission bits (0o777 at most).
    public var mode: UInt32
    public var kind: Kind

    public init(path: RelativePath, mode: UInt32, kind: Kind) {
        self.path = path
        self.mode = mode & 0o777
        self.kind = kind
    }

    var size: UInt64 {
        if case .file(let size, _) = kind { return size }
        return 0
    }
}

/// What one stream cost and carried.
public struct SnapshotStreamStatistics: Equatable, Sendable {
    /// File bytes read.
    public var fileBytes: UInt64 = 0
    /// Bytes of the stream (what went over the wire).
    public var streamBytes: UInt64 = 0
    public var chunksCompressed = 0
    public var chunksStored = 0

    public init() {}

    /// File bytes per stream byte (1 when nothing compressed).
    public var compressionRatio: Double { streamBytes == 0 ? 1 : Double(fileBytes) / Double(streamBytes) }
}

/// Writes snapshot streams (`SnapshotFormat`): reads each file through a
/// `SequentialFileReader` (io_uring, reads ahead), compresses each chunk with zstd as its own
/// frame (kept as is when that does not make it smaller), checksums, and hands the stream to
/// the caller in pieces. One writer per sending thread.
public final class SnapshotStreamWriter {
    public let level: Int
    let reader: SequentialFileReader
    private let compressor: ZstdCompressor
    private var scratch: [UInt8]

    public init(level: Int = 1, reader: SequentialFileReader) throws(CompressionError) {
        precondition(reader.chunkBytes <= SnapshotFormat.maximumChunkBytes, "chunks above the format's bound")
        self.level = level
        self.reader = reader
        compressor = try ZstdCompressor(level: level)
        scratch = [UInt8](repeating: 0, count: Int(craft_zstd_compress_bound(reader.chunkBytes)) + 64)
    }

    /// Writes the whole stream of `header` and `items` (directories before their contents),
    /// calling `emit` with pieces of at least `pieceBytes` (the last one may be smaller).
    /// `emit` may block (that is the sender's flow control) and returns false to stop the
    /// stream (the receiver is gone or refused, or the transfer was cancelled): the result
    /// is then nil. Throws when a file cannot be read.
    public func write(
        header: SnapshotHeader, items: [SnapshotItem], pieceBytes: Int = 1 << 20, emit: ([UInt8]) -> Bool
    ) throws(SnapshotStreamError) -> SnapshotStreamStatistics? {
        precondition(header.items == UInt32(items.count) && header.totalBytes == items.reduce(0) { $0 + $1.size })
        var stats = SnapshotStreamStatistics()
        var piece: [UInt8] = []
        piece.reserveCapacity(pieceBytes + scratch.count + 64)
        var crc: UInt32 = 0
        var stopped = false
        /// Emits the piece when it is large enough (or `force`); false once emit said stop.
        func flush(_ force: Bool) -> Bool {
            guard !piece.isEmpty, force || piece.count >= pieceBytes else { return true }
            crc = CRC32C.checksum(piece, extending: crc)
            stats.streamBytes += UInt64(piece.count)
            if !emit(piece) {
                stopped = true
                return false
            }
            piece.removeAll(keepingCapacity: true)
            return true
        }
        piece.append(contentsOf: header.encoded())
        for item in items {
            let path = Array(item.path.rawValue.utf8)
            switch item.kind {
            case .directory:
                piece.append(SnapshotFormat.Tag.directory.rawValue)
                piece.appendBigEndian(UInt16(path.count))
                piece.append(contentsOf: path)
                piece.appendBigEndian(item.mode)
            case .file(let size, let source):
                piece.append(SnapshotFormat.Tag.file.rawValue)
                piece.appendBigEndian(UInt16(path.count))
                piece.append(contentsOf: path)
                piece.appendBigEndian(item.mode)
                piece.appendBigEndian(size)
                var contentCRC: UInt32 = 0
                var compressionFailure: SnapshotStreamError?
                // A file whose first chunk does not compress (a pack: zlib already) is
                // stored as is from there on, without trying again.
                var compressing = true
                do {
                    try reader.read(source, size: size) { chunk in
                        contentCRC = CRC32C.checksum(chunk, extending: contentCRC)
                        if let failure = appendChunk(chunk, to: &piece, stats: &stats, compressing: &compressing) {
                            compressionFailure = failure
                            return false
                        }
                        return flush(false)
                    }
                } catch {
                    throw .io("reading \(source): \(error)")
                }
                if let compressionFailure { throw compressionFailure }
                if stopped { return nil }
                stats.fileBytes += size
                piece.append(SnapshotFormat.Tag.fileEnd.rawValue)
                piece.appendBigEndian(contentCRC)
            }
            if !flush(false) { return nil }
        }
        piece.append(SnapshotFormat.Tag.trailer.rawValue)
        piece.appendBigEndian(header.items)
        piece.appendBigEndian(header.totalBytes)
        piece.appendBigEndian(CRC32C.checksum(piece, extending: crc))
        return flush(true) ? stats : nil
    }

    /// Appends one chunk element; the error when compression failed.
    private func appendChunk(
        _ chunk: UnsafeRawBufferPointer, to piece: inout [UInt8], stats: inout SnapshotStreamStatistics,
        compressing: inout Bool
    ) -> SnapshotStreamError? {
        compressor.reset()
        var produced = 0
        var consumed = 0
        var complete = false
        while compressing && !complete && produced < chunk.count {
            let outcome = scratch.withUnsafeMutableBytes { out in
                Result { () throws(CompressionError) in
                    try compressor.compress(
                        UnsafeRawBufferPointer(rebasing: chunk[consumed...]),
                        into: UnsafeMutableRawBufferPointer(rebasing: out[produced...]), finish: true)
                }
            }
            let step: ZstdCompressor.Step
            do { step = try outcome.get() } catch { return .io("compressing a chunk: \(error)") }
            consumed += step.consumed
            produced += step.produced
            complete = step.isFrameComplete
            if step.consumed == 0 && step.produced == 0 && !complete { break }
        }
        let compressed = complete && produced < chunk.count
        // Less than 1/32 saved is not worth decoding for.
        if !compressed || produced > chunk.count - chunk.count / 32 { compressing = false }
        piece.append(SnapshotFormat.Tag.chunk.rawValue)
        piece.append(compressed ? 1 : 0)
        piece.appendBigEndian(UInt32(chunk.count))
        if compressed {
            stats.chunksCompressed += 1
            piece.appendBigEndian(UInt32(produced))
            piece.appendBigEndian(
                scratch.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[..<produced])) })
            piece.append(contentsOf: scratch[..<produced])
        } else {
            stats.chunksStored += 1
            piece.appendBigEndian(UInt32(chunk.count))
            piece.appendBigEndian(CRC32C.checksum(chunk))
            piece.append(contentsOf: chunk)
        }
        return nil
    }
}

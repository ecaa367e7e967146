import CRaftIO
import RaftConsensus

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Receives a snapshot stream (`SnapshotFormat`) into a staging directory, in pieces of any
/// size, checking as it goes: the header against what this receiver expects, every chunk's
/// checksum and length, every file's size and checksum, and at the end the item count, the
/// byte count and the checksum of the whole stream. Files are made durable as they end
/// (fdatasync, with writeback started along the way so the final flush has little left);
/// `finish` makes the directories durable.
///
/// Nothing outside `directory` is written. On any error the caller removes `directory`:
/// what was received is never used unless `isComplete`.
public final class SnapshotStreamReader {
    /// What the receiver accepts.
    public struct Expectation: Sendable {
        public var cluster: ClusterID
        public var partition: PartitionKey
        /// The index must be above this one (what the receiver already holds).
        public var above: LogIndex
        /// The largest partition this receiver takes.
        public var maximumBytes: UInt64
        /// When set, the header's index, term and configuration must be these (the snapshot
        /// message the stream came with).
        public var metadata: SnapshotMetadata?

        public init(cluster: ClusterID, partition: PartitionKey, above: LogIndex, maximumBytes: UInt64) {
            self.cluster = cluster
            self.partition = partition
            self.above = above
            self.maximumBytes = maximumBytes
        }
    }

    public let directory: String
    public let expectation: Expectation
    public private(set) var header: SnapshotHeader?
    public private(set) var isComplete = false
    /// Stream bytes taken so far.
    public private(set) var streamBytes: UInt64 = 0

    private var buffer: [UInt8] = []
    private var consumed = 0
    private var crc: UInt32 = 0
    private var items: UInt32 = 0
    private var fileBytes: UInt64 = 0
    private var current: OpenFile?
    private var directories: [String] = []
    private let decompressor: ZstdDecompressor
    private var failed: SnapshotStreamError?

    private struct OpenFile {
        let file: DiskFile
        let path: String
        let size: UInt64
        var written: UInt64 = 0
        var crc: UInt32 = 0
        var writtenBack: UInt64 = 0
        var waitedBack: UInt64 = 0
    }

    /// Writeback is started every this many bytes of a file.
    static let writebackStep: UInt64 = 8 << 20

    /// Whether files and directories are made durable (tests that only check parsing skip it).
    let durable: Bool

    /// `directory` must exist and be empty.
    public init(directory: String, expectation: Expectation, durable: Bool = true) throws(SnapshotStreamError) {
        self.directory = directory
        self.expectation = expectation
        self.durable = durable
        do { decompressor = try ZstdDecompressor() } catch { throw .io("zstd: \(error)") }
        directories.append(directory)
    }

    deinit { if let current { try? current.file.close() } }

    /// Takes the next piece of the stream.
    public func consume(_ piece: [UInt8]) throws(SnapshotStreamError) {
        if let failed { throw failed }
        guard !isComplete || piece.isEmpty else {
            throw fail(.damaged("\(piece.count) bytes after the trailer"))
        }
        streamBytes += UInt64(piece.count)
        if consumed > 0 && consumed >= buffer.count / 2 {
            buffer.removeFirst(consumed)
            consumed = 0
        }
        buffer.append(contentsOf: piece)
        do {
            while try step() {}
        } catch {
            throw fail(error)
        }
    }

    /// Makes the received directories durable. Requires `isComplete`.
    public func finish() throws(SnapshotStreamError) {
        if let failed { throw failed }
        guard isComplete else { throw .damaged("the stream ended before its trailer (\(streamBytes) bytes)") }
        guard durable else { return }
        do {
            for path in directories.reversed() { try DiskFile.syncDirectory(path) }
        } catch {
            throw fail(.io("\(error)"))
        }
    }

    private func fail(_ error: SnapshotStreamError) -> SnapshotStreamError {
        failed = error
        if let current {
            try? current.file.close()
            self.current = nil
        }
        return error
    }

    /// Parses one element if the buffer holds all of it; false when more bytes are needed.
    private func step() throws(SnapshotStreamError) -> Bool {
        let available = buffer[consumed...]
        guard let header else {
            guard let (decoded, length) = try SnapshotHeader.decode(available) else { return false }
            try check(decoded)
            self.header = decoded
            advance(length)
            return true
        }
        guard !isComplete, let tagByte = available.first else { return false }
        guard let tag = SnapshotFormat.Tag(rawValue: tagByte) else {
            throw .damaged("unknown element 0x\(String(tagByte, radix: 16)) at stream byte \(position)")
        }
        var r = SliceReader(available.dropFirst())
        switch tag {
        case .directory, .file:
            guard current == nil else { throw .damaged("an item starts inside a file at stream byte \(position)") }
            guard let length = r.u16(), let raw = r.take(Int(length)), let mode = r.u32() else { return false }
            var size: UInt64 = 0
            if tag == .file {
                guard let s = r.u64() else { return false }
                size = s
            }
            items += 1
            guard items <= header.items else { throw .damaged("more than the \(header.items) items declared") }
            let path: RelativePath
            do { path = try RelativePath(bytes: raw) } catch { throw .damaged("item path: \(error)") }
            let target = directory + "/" + path.rawValue
            if tag == .directory {
                try makeDirectories(target, mode: mode)
            } else {
                guard size <= header.totalBytes - fileBytes else {
                    throw .damaged("file \(path) of \(size) bytes is over the declared total")
                }
                try makeDirectories(parent(of: target), mode: 0o755)
                do {
                    let file = try DiskFile.open(
                        target, DiskFile.OpenOptions(flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode_t(mode & 0o777)))
                    current = OpenFile(file: file, path: target, size: size)
                } catch {
                    throw .io("\(error)")
                }
            }
            advance(1 + r.offset)
            return true
        case .chunk:
            guard var file = current else { throw .damaged("a chunk outside a file at stream byte \(position)") }
            guard let flags = r.u8(), let rawLength = r.u32(), let storedLength = r.u32(), let stored = r.u32() else {
                return false
            }
            guard flags <= 1, rawLength > 0, Int(rawLength) <= SnapshotFormat.maximumChunkBytes,
                UInt64(rawLength) <= file.size - file.written,
                Int(storedLength) <= craft_zstd_compress_bound(Int(rawLength)) + 64,
                flags == 1 || storedLength == rawLength
            else {
                throw .damaged("a chunk header is out of bounds at stream byte \(position)")
            }
            guard let data = r.take(Int(storedLength)) else { return false }
            guard data.withUnsafeBytes({ CRC32C.checksum($0) }) == stored else {
                throw .damaged("a chunk of \(file.path) fails its checksum")
            }
            // A stored chunk is checked and written from the received bytes as they are.
            let decoded: [UInt8]? = flags == 1 ? try decompress(data, rawLength: Int(rawLength), of: file.path) : nil
            let written = (decoded.map { $0[...] } ?? data).withUnsafeBytes { bytes in
                file.crc = CRC32C.checksum(bytes, extending: file.crc)
                return Result { () throws(IOError) in try file.file.write(toAbsoluteOffset: file.written, bytes) }
            }
            if case .failure(let error) = written { throw .io("\(error)") }
            file.written += UInt64(rawLength)
            if durable && file.written - file.writtenBack >= Self.writebackStep {
                file.file.startWriteback(offset: file.writtenBack, length: file.written - file.writtenBack)
                // The step before this one: waited for, so at most two are queued at the
                // disk ahead of the WAL's fdatasyncs (as attachments do).
                file.file.awaitWriteback(offset: file.waitedBack, length: file.writtenBack - file.waitedBack)
                file.waitedBack = file.writtenBack
                file.writtenBack = file.written
            }
            current = file
            advance(1 + r.offset)
            return true
        case .fileEnd:
            guard let file = current else { throw .damaged("a file end outside a file at stream byte \(position)") }
            guard let expected = r.u32() else { return false }
            guard file.written == file.size else {
                throw .damaged("\(file.path) ended after \(file.written) of its \(file.size) bytes")
            }
            guard file.crc == expected else { throw .damaged("\(file.path) fails its checksum") }
            do {
                if durable { try file.file.syncData() }
                try file.file.close()
            } catch {
                throw .io("\(error)")
            }
            current = nil
            fileBytes += file.size
            advance(1 + r.offset)
            return true
        case .trailer:
            guard current == nil else { throw .damaged("the trailer arrived inside a file") }
            guard let count = r.u32(), let total = r.u64() else { return false }
            let covered = 1 + r.offset
            guard let expected = r.u32() else { return false }
            let sum = CRC32C.checksum(Array(available.prefix(covered)), extending: crc)
            guard sum == expected else { throw .damaged("the stream's checksum does not match") }
            guard count == header.items, items == header.items, total == header.totalBytes, fileBytes == total
            else {
                throw .damaged(
                    "the trailer counts \(count) items and \(total) bytes; \(items) and \(fileBytes) arrived")
            }
            advance(1 + r.offset)
            guard consumed == buffer.count else { throw .damaged("bytes after the trailer") }
            isComplete = true
            return false
        }
    }

    /// One chunk's zstd frame, which must decode to exactly `rawLength` bytes.
    private func decompress(
        _ data: ArraySlice<UInt8>, rawLength: Int, of path: String
    ) throws(SnapshotStreamError)
        -> [UInt8]
    {
        decompressor.reset()
        var out = [UInt8](repeating: 0, count: rawLength)
        var consumedIn = 0
        var produced = 0
        var complete = false
        while !complete {
            let outcome = data.withUnsafeBytes { input in
                out.withUnsafeMutableBytes { output in
                    Result { () throws(CompressionError) in
                        try decompressor.decompress(
                            UnsafeRawBufferPointer(rebasing: input[consumedIn...]),
                            into: UnsafeMutableRawBufferPointer(rebasing: output[produced...]))
                    }
                }
            }
            let step: ZstdDecompressor.Step
            do { step = try outcome.get() } catch { throw .damaged("a chunk of \(path) does not decompress: \(error)") }
            consumedIn += step.consumed
            produced += step.produced
            complete = step.isFrameComplete
            if !complete && step.consumed == 0 && step.produced == 0 {
                throw .damaged("a chunk of \(path) is not a whole zstd frame of \(rawLength) bytes")
            }
        }
        guard consumedIn == data.count, produced == rawLength else {
            throw .damaged("a chunk of \(path) decodes to \(produced) bytes from \(consumedIn) of \(data.count)")
        }
        return out
    }

    private var position: UInt64 { streamBytes - UInt64(buffer.count - consumed) }

    private func advance(_ length: Int) {
        crc = buffer.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[consumed..<(consumed + length)]), extending: crc)
        }
        consumed += length
    }

    private func check(_ h: SnapshotHeader) throws(SnapshotStreamError) {
        let e = expectation
        guard h.cluster == e.cluster else { throw .foreign("the stream is of cluster \(h.cluster), not \(e.cluster)") }
        guard h.partition == e.partition else {
            throw .foreign("the stream is of partition \(h.partition), not \(e.partition)")
        }
        guard h.index > e.above else {
            throw .foreign("the stream is at index \(h.index); this replica holds \(e.above)")
        }
        if let m = e.metadata,
            m.index != h.index || m.term != h.term
                || (try? StoredConfState(m.confState)) != (try? StoredConfState(h.confState))
        {
            throw .foreign("the stream is of \(h.index) (term \(h.term)), its message of \(m)")
        }
        guard h.totalBytes <= e.maximumBytes else {
            throw .foreign("a snapshot of \(h.totalBytes) bytes is over this node's limit of \(e.maximumBytes)")
        }
    }

    private func parent(of path: String) -> String {
        String(path[..<path.lastIndex(of: "/")!])
    }

    /// Creates `path` and its missing parents below `directory` (paths were validated: no
    /// `..`, and nothing in staging is a link, since only this reader writes there).
    private func makeDirectories(_ path: String, mode: UInt32) throws(SnapshotStreamError) {
        guard path != directory, !FileSystem.exists(path) else { return }
        try makeDirectories(parent(of: path), mode: 0o755)
        do { try FileSystem.makeDirectory(path, mode: mode_t(mode & 0o777) | 0o700) } catch {
            throw .io("\(error)")
        }
        directories.append(path)
    }
}

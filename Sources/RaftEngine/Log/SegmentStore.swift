/// The segment files of one WAL directory: creating (preallocated, header written, made
/// durable before the first record goes in), listing, reading and deleting them.
///
/// Used by the writer thread; readers get `DiskFile`s from it under the log's lock and read
/// while holding the log's segment lock shared, so a segment is never closed under a read.
final class SegmentStore {
    let directory: String
    let segmentSize: Int
    private(set) var files: [UInt64: DiskFile] = [:]
    /// Ascending. Invariant: the keys of `files`.
    private(set) var sequences: [UInt64] = []
    let device: any WALDevice

    init(directory: String, segmentSize: Int, device: any WALDevice) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.device = device
    }

    func path(_ sequence: UInt64) -> String { "\(directory)/\(WALFormat.segmentName(sequence))" }

    /// Opens every existing segment, in order. Leftover temporary files of an interrupted
    /// creation are removed; any other unknown file is refused.
    func openExisting() throws(WALError) {
        let names: [String]
        do { names = try FileSystem.list(directory) } catch { throw .io(error) }
        var found: [UInt64] = []
        for name in names {
            if let sequence = WALFormat.segmentSequence(fromName: name) {
                found.append(sequence)
            } else if name.hasSuffix(".wal.tmp") {
                do { try FileSystem.removeFile("\(directory)/\(name)") } catch { throw .io(error) }
            } else {
                throw .foreignFile(
                    file: "\(directory)/\(name)", reason: "not a WAL segment name (expected 16 hex digits + .wal)")
            }
        }
        for sequence in found.sorted() {
            do {
                files[sequence] = try DiskFile.open(path(sequence), .readWrite)
            } catch {
                throw .io(error)
            }
            sequences.append(sequence)
        }
    }

    /// Creates segment `sequence`: written under a temporary name, preallocated, header
    /// written and synced, then renamed into place and the directory synced. A crash at any
    /// point leaves either no segment or a complete empty one.
    func create(_ sequence: UInt64) throws(WALError) -> DiskFile {
        precondition(sequences.last.map { $0 < sequence } ?? true, "segments are created in order")
        let final = path(sequence)
        let temporary = final + ".tmp"
        do {
            if FileSystem.exists(temporary) { try FileSystem.removeFile(temporary) }
            let file = try DiskFile.open(temporary, .createNew)
            try device.allocate(file, length: UInt64(segmentSize))
            var header = [UInt8](repeating: 0, count: WALFormat.segmentHeaderSize)
            header.withUnsafeMutableBytes { SegmentHeader(sequence: sequence).encode(into: $0.baseAddress!) }
            try header.withUnsafeBytes { bytes in
                Result { () throws(IOError) in try file.write(toAbsoluteOffset: 0, bytes) }
            }.get()
            try file.syncData()
            try FileSystem.rename(temporary, to: final)
            try DiskFile.syncDirectory(directory)
            files[sequence] = file
            sequences.append(sequence)
            return file
        } catch {
            if FileSystem.exists(temporary) { try? FileSystem.removeFile(temporary) }
            throw .io(error)
        }
    }

    /// Closes and removes segment `sequence` (the caller holds the segment lock exclusively).
    func delete(_ sequence: UInt64) throws(WALError) {
        guard let file = files.removeValue(forKey: sequence) else { return }
        sequences.removeAll { $0 == sequence }
        do {
            try file.close()
            try FileSystem.removeFile(path(sequence))
        } catch {
            throw .io(error)
        }
    }

    func syncDirectory() throws(WALError) {
        do { try DiskFile.syncDirectory(directory) } catch { throw .io(error) }
    }
}

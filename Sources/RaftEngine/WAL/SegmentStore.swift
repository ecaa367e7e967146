/// The segment files of one WAL directory: creating (preallocated, header written, made
/// durable before the first record goes in), listing, reading and deleting them.
///
/// The writer thread is the only one that changes it, and does so holding `access`
/// exclusively; readers look files up and read them holding `access` shared, so a segment
/// is never closed under a read and the table never changes under a lookup.
final class SegmentStore {
    let directory: String
    let segmentSize: Int
    /// Shared by readers, exclusive while the table of segments changes. Writer-preferring,
    /// so that a stream of reads cannot hold off the WAL writer.
    let access = ReadWriteLock(preferWriters: true)
    private(set) var files: [UInt64: DiskFile] = [:]
    /// Each segment's salt (from its header), for batch header checksums.
    private(set) var salts: [UInt64: UInt64] = [:]
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

    /// Records the salt read from a segment's header at recovery.
    func setSalt(_ salt: UInt64, for sequence: UInt64) {
        access.withExclusive { salts[sequence] = salt }
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
            let salt = UInt64.random(in: 1...UInt64.max)
            var header = [UInt8](repeating: 0, count: WALFormat.segmentHeaderSize)
            header.withUnsafeMutableBytes {
                SegmentHeader(sequence: sequence, salt: salt).encode(into: $0.baseAddress!)
            }
            try header.withUnsafeBytes { bytes in
                Result { () throws(IOError) in try file.write(toAbsoluteOffset: 0, bytes) }
            }.get()
            try file.syncData()
            try file.rename(to: final)
            try DiskFile.syncDirectory(directory)
            access.withExclusive {
                files[sequence] = file
                salts[sequence] = salt
                sequences.append(sequence)
            }
            return file
        } catch {
            if FileSystem.exists(temporary) { try? FileSystem.removeFile(temporary) }
            throw .io(error)
        }
    }

    /// Closes and removes the oldest segments, each unlink made durable before the next, so
    /// that what survives a crash is always a suffix of the log.
    func deleteOldest(_ doomed: [UInt64]) throws(WALError) {
        for sequence in doomed {
            precondition(sequence == sequences.first, "segments are deleted oldest first")
            let file = access.withExclusive { () -> DiskFile? in
                sequences.removeFirst()
                salts[sequence] = nil
                return files.removeValue(forKey: sequence)
            }
            do {
                try file?.close()
                try FileSystem.removeFile(path(sequence))
                try DiskFile.syncDirectory(directory)
            } catch {
                throw .io(error)
            }
        }
    }

    func syncDirectory() throws(WALError) {
        do { try DiskFile.syncDirectory(directory) } catch { throw .io(error) }
    }
}

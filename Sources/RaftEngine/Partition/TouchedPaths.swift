import Synchronization

/// Files and directories written since the last checkpoint, to make durable then: each
/// file's data (fsync) and each directory's entries (fsync of the directory). A checkpoint
/// flushes exactly what the partition's apply touched, not the whole file system (a
/// syncfs competes with the WAL's fdatasyncs for the journal under load).
public final class TouchedPaths: Sendable {
    private let paths = Mutex<Set<String>>([])

    public init() {}

    func note(_ path: String) { _ = paths.withLock { $0.insert(path) } }

    /// Moves everything noted here into `other` (a checkpoint round flushes the paths of
    /// all its partitions together).
    func move(into other: TouchedPaths) {
        let taken = paths.withLock { p -> Set<String> in
            defer { p = [] }
            return p
        }
        other.paths.withLock { $0.formUnion(taken) }
    }

    func note(parentOf path: String) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        note(String(path[..<slash]))
    }

    /// Makes everything noted durable, then forgets it. A path removed meanwhile is skipped
    /// (its directory was noted when it was removed).
    ///
    /// Above `syncFileSystemAbove` paths, one syncfs of the file system holding
    /// `fileSystem` replaces the fsyncs: thousands of small fsyncs (a push of 100 references
    /// on many partitions) each force a journal commit and starve the WAL's fdatasyncs,
    /// while one syncfs a round costs one commit plus the dirty data, which is written
    /// either way.
    ///
    /// Not when the system holds much dirty data besides (`syncFileSystemDirtyLimit`, from
    /// /proc/meminfo): a syncfs would flush all of it, say the 200 MiB of a pack being
    /// pushed, and hold every fdatasync of the WAL behind it for hundreds of milliseconds
    /// (measured with PartitionBench: the p99 of small transactions during a 200 MiB push
    /// fell from 370 to 116 ms without it).
    ///
    /// `ownDirtyBytes`: dirty data the caller wrote for this flush (it is written either
    /// way), left out of the comparison with the limit.
    func flush(fileSystem: String? = nil, syncFileSystemAbove: Int = 64, ownDirtyBytes: Int = 0) throws(IOError) {
        let taken = paths.withLock { p -> Set<String> in
            defer { p = [] }
            return p
        }
        do {
            if let fileSystem, taken.count > syncFileSystemAbove,
                let dirty = Self.systemDirtyBytes(),
                dirty <= Self.syncFileSystemDirtyLimit + UInt64(max(0, ownDirtyBytes))
            {
                let handle = try DiskFile.open(fileSystem, .directory)
                defer { try? handle.close() }
                try handle.syncFileSystem()
                return
            }
            for path in taken.sorted() {
                // Gone since (a leading part may even be a file now): its parent was noted.
                switch try FileSystem.kind(of: path, followSymlinks: false) {
                case .directory:
                    try DiskFile.syncDirectory(path)
                case .regularFile:
                    let file = try DiskFile.open(path, .readOnly)
                    defer { try? file.close() }
                    try file.sync()
                default:
                    continue
                }
            }
        } catch {
            // Not durable: note them again for the next round.
            paths.withLock { $0.formUnion(taken) }
            throw error
        }
    }

    /// Above this much dirty data in the system, a checkpoint round fsyncs what it touched
    /// rather than syncing the whole file system.
    static let syncFileSystemDirtyLimit: UInt64 = 32 << 20

    /// Dirty and under-writeback page cache of the whole system (/proc/meminfo), or nil
    /// when it cannot be read (then: no syncfs).
    static func systemDirtyBytes() -> UInt64? {
        // A /proc file reports size 0: read until the end instead.
        guard let file = try? DiskFile.open("/proc/meminfo", .readOnly) else { return nil }
        defer { try? file.close() }
        var bytes = [UInt8](repeating: 0, count: 16 << 10)
        guard
            let count = try? bytes.withUnsafeMutableBytes({ raw in
                Result { () throws(IOError) in try file.readFully(fromAbsoluteOffset: 0, into: raw) }
            }).get()
        else { return nil }
        bytes.removeSubrange(count...)
        var total: UInt64 = 0
        var found = 0
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("Dirty:") || line.hasPrefix("Writeback:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kilobytes = UInt64(fields[1]) else { return nil }
            total += kilobytes * 1024
            found += 1
        }
        return found == 2 ? total : nil
    }
}

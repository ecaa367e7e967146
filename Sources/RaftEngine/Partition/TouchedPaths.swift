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
    func flush(fileSystem: String? = nil, syncFileSystemAbove: Int = 64) throws(IOError) {
        let taken = paths.withLock { p -> Set<String> in
            defer { p = [] }
            return p
        }
        do {
            if let fileSystem, taken.count > syncFileSystemAbove {
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
}

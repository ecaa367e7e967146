import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An open file or directory descriptor, owned: closed by `close()` or when released.
///
/// Every method is one CRaftIO call: EINTR retried, bug errnos trapped, the rest thrown as
/// `IOError` with this file's path.
public final class DiskFile {
    /// How to open a file.
    public struct OpenOptions: Sendable {
        public var flags: Int32
        public var mode: mode_t

        public init(flags: Int32, mode: mode_t = 0o644) {
            self.flags = flags
            self.mode = mode
        }

        public static let readOnly = OpenOptions(flags: O_RDONLY)
        public static let readWrite = OpenOptions(flags: O_RDWR)
        /// Create if missing, read and write.
        public static let createReadWrite = OpenOptions(flags: O_RDWR | O_CREAT)
        /// Create; fail with `.alreadyExists` if the file exists.
        public static let createNew = OpenOptions(flags: O_RDWR | O_CREAT | O_EXCL)
        /// A directory, for `sync()` after creating, renaming or removing entries in it.
        public static let directory = OpenOptions(flags: O_RDONLY | O_DIRECTORY)
    }

    /// The descriptor. Invariant: `>= 0` until `close()`, then `-1`.
    public private(set) var descriptor: Int32
    /// The path it was opened with (or renamed to with `rename(to:)`), for error messages.
    public private(set) var path: String

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        if descriptor >= 0 { _ = craft_close(descriptor) }
    }

    /// Opens `path` (absolute, or relative to the working directory).
    public static func open(_ path: String, _ options: OpenOptions) throws(IOError) -> DiskFile {
        let fd = try Syscall.call("open", path: path) { craft_openat(AT_FDCWD, path, options.flags, options.mode) }
        return DiskFile(descriptor: fd, path: path)
    }

    /// Renames the file (rename(2); the caller syncs the directory) and names it by its new
    /// path from now on. Call before the file is shared with other threads.
    public func rename(to newPath: String) throws(IOError) {
        try FileSystem.rename(path, to: newPath)
        path = newPath
    }

    /// Closes the descriptor. A close error after a successful fdatasync loses nothing, but
    /// is still reported.
    public func close() throws(IOError) {
        guard descriptor >= 0 else { return }
        let fd = descriptor
        descriptor = -1
        // close(2) must not be retried on EINTR: the descriptor is gone either way.
        let rc = craft_close(fd)
        if rc < 0 && rc != -EINTR { try Syscall.failure("close", path: path, code: -rc) }
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns the count read (0 at end of file).
    public func read(
        fromAbsoluteOffset offset: UInt64, into buffer: UnsafeMutableRawBufferPointer
    ) throws(IOError)
        -> Int
    {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        let fd = liveDescriptor
        return Int(try Syscall.call("pread", path: path) { craft_pread(fd, base, buffer.count, offset) })
    }

    /// Reads exactly `buffer.count` bytes at `offset`, or fewer only at end of file; returns the count.
    public func readFully(
        fromAbsoluteOffset offset: UInt64, into buffer: UnsafeMutableRawBufferPointer
    )
        throws(IOError) -> Int
    {
        var done = 0
        while done < buffer.count {
            let n = try read(
                fromAbsoluteOffset: offset + UInt64(done),
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            )
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes all of `bytes` at `offset`, continuing after short writes; a write that makes
    /// no progress throws.
    public func write(toAbsoluteOffset offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws(IOError) {
        let fd = liveDescriptor
        var done = 0
        while done < bytes.count {
            let n = try Syscall.call("pwrite", path: path) {
                craft_pwrite(fd, bytes.baseAddress! + done, bytes.count - done, offset + UInt64(done))
            }
            if n == 0 { throw IOError("pwrite", path: path, kind: .writeIncomplete) }
            done += Int(n)
        }
    }

    /// Reserves `length` bytes from `offset`, extending the file, so later appends need no
    /// block allocation.
    public func allocate(offset: UInt64, length: UInt64) throws(IOError) {
        let fd = liveDescriptor
        _ = try Syscall.call("fallocate", path: path) { craft_fallocate(fd, offset, length) }
    }

    /// fdatasync(2): the file's data, and the metadata needed to read it, are durable.
    public func syncData() throws(IOError) {
        let fd = liveDescriptor
        _ = try Syscall.call("fdatasync", path: path) { craft_fdatasync(fd) }
    }

    /// fsync(2): data and all metadata; on a directory, its entries.
    public func sync() throws(IOError) {
        let fd = liveDescriptor
        _ = try Syscall.call("fsync", path: path) { craft_fsync(fd) }
    }

    /// syncfs(2): everything dirty on the file system that holds this file is durable.
    public func syncFileSystem() throws(IOError) {
        let fd = liveDescriptor
        _ = try Syscall.call("syncfs", path: path) { craft_syncfs(fd) }
    }

    /// Asks the kernel to read `length` bytes from `offset` into the page cache in the
    /// background. Advisory: a failure is ignored (it only costs speed).
    public func prefetch(offset: UInt64, length: UInt64) {
        guard descriptor >= 0 else { return }
        _ = craft_prefetch(descriptor, offset, length)
    }

    /// Starts writing the range back to the disk without waiting (a hint: durability still
    /// needs `sync()`). Large files written in steps call it per step, so their final sync
    /// is short and does not hold the disk from other files' syncs for long.
    public func startWriteback(offset: UInt64, length: UInt64) {
        guard descriptor >= 0 else { return }
        _ = craft_writeback(descriptor, offset, length)
    }

    /// Waits until the range is written back (starting it if needed): a large file written
    /// in steps waits for the step before last, which bounds what it queues at the disk.
    public func awaitWriteback(offset: UInt64, length: UInt64) {
        guard descriptor >= 0, length > 0 else { return }
        _ = craft_writeback_wait(descriptor, offset, length)
    }

    public func truncate(to length: UInt64) throws(IOError) {
        let fd = liveDescriptor
        _ = try Syscall.call("ftruncate", path: path) { craft_ftruncate(fd, length) }
    }

    /// The file size in bytes.
    public func size() throws(IOError) -> UInt64 {
        let fd = liveDescriptor
        return UInt64(try Syscall.call("fstat", path: path) { craft_file_size(fd) })
    }

    /// Makes the entries of the directory at `path` durable (after a create, rename or unlink).
    public static func syncDirectory(_ path: String) throws(IOError) {
        let directory = try DiskFile.open(path, .directory)
        try directory.sync()
        try directory.close()
    }

    private var liveDescriptor: Int32 {
        precondition(descriptor >= 0, "\(path): used after close")
        return descriptor
    }
}

import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

extension DiskFile {
    /// Takes an exclusive advisory lock (flock(2)) on this file without waiting; returns
    /// false when another open of the file, in this process or another, holds it. The lock
    /// lasts until the descriptor is closed, so a crashed holder never leaves it behind.
    public func tryLockExclusive() throws(IOError) -> Bool {
        precondition(descriptor >= 0, "\(path): used after close")
        let fd = descriptor
        do {
            _ = try Syscall.call("flock", path: path) { craft_lock_exclusive(fd) }
            return true
        } catch  where error.code == EWOULDBLOCK {
            return false
        }
    }
}

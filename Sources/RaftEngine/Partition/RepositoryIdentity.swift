#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Which incarnation of a repository directory a slow operation began against: its
/// `objects` directory's inode and change time, and the pool it borrows from (its
/// alternates file). A push indexed by `git receive-pack` before the transaction is
/// verified names it (`PartitionWriter.commit(_:_:packsIndexedHere:unchanged:)`): if the
/// repository was removed and created again, or linked to another pool or unlinked, in
/// between, the objects the pack's thin deltas and history relied on may be gone.
public struct RepositoryIdentity: Sendable, Equatable {
    public let path: RelativePath
    let device: UInt64
    let inode: UInt64
    let changeSeconds: Int
    let changeNanoseconds: Int
    let alternates: [UInt8]

    /// The identity of `path` under `storageRoot` now; nil when it has no `objects`.
    public static func current(storageRoot: String, path: RelativePath) -> RepositoryIdentity? {
        let objects = RelativePath.join(storageRoot, path.rawValue) + "/objects"
        var info = stat()
        guard stat(objects, &info) == 0 else { return nil }
        let alternates = (try? FileSystem.readFileIfExists(objects + "/info/alternates")) ?? nil
        return RepositoryIdentity(
            path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino), changeSeconds: info.st_ctim.tv_sec,
            changeNanoseconds: info.st_ctim.tv_nsec, alternates: alternates ?? [])
    }
}

import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Path-level file system calls for the storage layout: create a directory, ask what is at
/// a path, resolve a path to its canonical form. One CRaftIO call each, through `Syscall`.
public enum FileSystem {
    /// What a path names.
    public enum FileKind: Sendable, Equatable {
        case directory
        case regularFile
        case symbolicLink
        case other
    }

    /// Creates the directory `path` (its parent must exist). Throws `.alreadyExists` when
    /// anything is already there: the caller decides whether that is fine.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws(IOError) {
        _ = try Syscall.call("mkdir", path: path) { craft_mkdir(path, mode) }
    }

    /// What is at `path`, or nil when nothing is (also when a leading part is a file, not a
    /// directory: ENOTDIR). With `followSymlinks` false a symbolic link is reported as such
    /// instead of as its target.
    public static func kind(of path: String, followSymlinks: Bool) throws(IOError) -> FileKind? {
        do {
            let type = try Syscall.call(followSymlinks ? "stat" : "lstat", path: path) {
                craft_file_type(path, followSymlinks ? 1 : 0)
            }
            switch mode_t(truncatingIfNeeded: type) {
            case S_IFDIR: return .directory
            case S_IFREG: return .regularFile
            case S_IFLNK: return .symbolicLink
            default: return .other
            }
        } catch  where error.kind == .notFound || error.kind == .notADirectory {
            return nil
        }
    }

    /// What lstat(2) says of `path`: its kind, permission bits and size (a link is not
    /// followed).
    public static func status(of path: String) throws(IOError) -> (kind: FileKind, mode: UInt32, size: UInt64) {
        var mode: UInt32 = 0
        var size: UInt64 = 0
        _ = try Syscall.call("lstat", path: path) { craft_lstat(path, &mode, &size) }
        let kind: FileKind =
            switch mode_t(mode) & S_IFMT {
            case S_IFDIR: .directory
            case S_IFREG: .regularFile
            case S_IFLNK: .symbolicLink
            default: .other
            }
        return (kind, mode & 0o7777, size)
    }

    /// The canonical absolute path of the existing `path`: every symbolic link, `.` and `..`
    /// resolved (realpath(3)).
    public static func canonicalPath(_ path: String) throws(IOError) -> String {
        let capacity = Int(PATH_MAX) + 1
        var buffer = [CChar](repeating: 0, count: capacity)
        let length = try buffer.withUnsafeMutableBufferPointer { (out) throws(IOError) -> Int64 in
            try Syscall.call("realpath", path: path) { craft_realpath(path, out.baseAddress!, capacity) }
        }
        return String(decoding: buffer[0..<Int(length)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

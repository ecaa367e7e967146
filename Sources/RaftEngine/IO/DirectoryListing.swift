#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Directory operations the storage layer needs, as typed-error wrappers.
public enum Directory {
    /// The names in `path`, without `.` and `..`, sorted.
    public static func list(_ path: String) throws(IOError) -> [String] {
        guard let dir = opendir(path) else { throw IOError("opendir", path: path, code: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Creates `path` (one level) unless it exists as a directory.
    public static func create(_ path: String, mode: mode_t = 0o755) throws(IOError) {
        if mkdir(path, mode) == 0 { return }
        let code = errno
        if code == EEXIST, isDirectory(path) { return }
        throw IOError("mkdir", path: path, code: code)
    }

    /// Whether `path` is a directory (following symlinks).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Removes a file.
    public static func removeFile(_ path: String) throws(IOError) {
        if unlink(path) != 0 { throw IOError("unlink", path: path, code: errno) }
    }

    /// Renames atomically within one file system.
    public static func rename(_ from: String, to: String) throws(IOError) {
        if Glibc.rename(from, to) != 0 { throw IOError("rename to \(to)", path: from, code: errno) }
    }
}

import CRaftIO

/// Directory entries: listing, removing and renaming files (the WAL's segment management).
extension FileSystem {
    /// The names in the directory `path`, without `.` and `..`, sorted.
    public static func list(_ path: String) throws(IOError) -> [String] {
        var handle: OpaquePointer?
        _ = try Syscall.call("opendir", path: path) { craft_dir_open(path, &handle) }
        defer { craft_dir_close(handle) }
        var names: [String] = []
        var buffer = [CChar](repeating: 0, count: 1024)
        while true {
            let length = try buffer.withUnsafeMutableBufferPointer { (out) throws(IOError) -> Int64 in
                try Syscall.call("readdir", path: path) { craft_dir_next(handle, out.baseAddress!, out.count) }
            }
            if length == 0 { break }
            names.append(String(decoding: buffer[0..<Int(length)].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names.sorted()
    }

    /// Whether anything (a symbolic link included) exists at `path`.
    public static func exists(_ path: String) -> Bool {
        ((try? kind(of: path, followSymlinks: false)) ?? nil) != nil
    }

    /// The whole contents of the file at `path`, or nil when nothing is there.
    public static func readFileIfExists(_ path: String) throws(IOError) -> [UInt8]? {
        guard exists(path) else { return nil }
        let file = try DiskFile.open(path, .readOnly)
        defer { try? file.close() }
        var bytes = [UInt8](repeating: 0, count: Int(try file.size()))
        let n = try bytes.withUnsafeMutableBytes { raw in
            Result { () throws(IOError) in try file.readFully(fromAbsoluteOffset: 0, into: raw) }
        }.get()
        return n == bytes.count ? bytes : Array(bytes.prefix(n))
    }

    /// Removes a file.
    public static func removeFile(_ path: String) throws(IOError) {
        _ = try Syscall.call("unlink", path: path) { craft_unlink(path) }
    }

    /// Gives the file `from` a second name `to` (same file system): a hard link.
    public static func link(_ from: String, to: String) throws(IOError) {
        _ = try Syscall.call("link to \(to)", path: from) { craft_link(from, to) }
    }

    /// Removes an empty directory.
    public static func removeDirectory(_ path: String) throws(IOError) {
        _ = try Syscall.call("rmdir", path: path) { craft_rmdir(path) }
    }

    /// Removes `path` and everything under it (symbolic links are removed, not followed).
    /// Nothing there: nothing happens.
    public static func removeTree(_ path: String) throws(IOError) {
        guard let kind = try kind(of: path, followSymlinks: false) else { return }
        guard kind == .directory else { return try removeFile(path) }
        for entry in try list(path) { try removeTree(path + "/" + entry) }
        try removeDirectory(path)
    }

    /// The bytes of the regular files under `path` (symbolic links are not followed);
    /// zero when nothing is there or it cannot be read.
    public static func treeBytes(_ path: String) -> UInt64 {
        guard let found = try? status(of: path) else { return 0 }
        switch found.kind {
        case .directory:
            return ((try? list(path)) ?? []).reduce(0) { $0 + treeBytes(path + "/" + $1) }
        case .regularFile:
            return found.size
        default:
            return 0
        }
    }

    /// Renames atomically within one file system.
    public static func rename(_ from: String, to: String) throws(IOError) {
        _ = try Syscall.call("rename to \(to)", path: from) { craft_rename(from, to) }
    }
}

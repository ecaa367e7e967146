import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Writes a bare Git repository in git's own formats (files ref backend), without a `git`
/// process: the apply path of a partition. Every write is a lock file renamed into place,
/// as git does, so a reader sees the old or the new content, never a torn one, and a
/// crash leaves at most a `.lock` file that `removeStaleLocks()` deletes at start.
///
/// Every operation is idempotent: applied again after a crash, it gives the same bytes.
/// Nothing here fsyncs: the log entry that asked for the change is already durable, and a
/// checkpoint flushes repositories before the applied index that covers them is recorded.
public struct RepositoryFiles: Sendable {
    /// The repository's directory (storage root + validated relative path).
    public let path: String
    /// Where the files and directories this writes are noted for the next checkpoint.
    public let touched: TouchedPaths?

    public init(path: String, touched: TouchedPaths? = nil) {
        self.path = path
        self.touched = touched
    }

    /// Creates the repository (HEAD naming `defaultBranch`, config, objects, refs). Met
    /// again (re-applied after a crash), HEAD and config are written again whatever they
    /// hold: a power failure may have left them empty, and the entries after this one,
    /// applied again too, set HEAD as it was.
    public func create(defaultBranch: RefName) throws(IOError) {
        try makeDirectories(path)
        for directory in ["objects", "objects/info", "objects/pack", "refs", "refs/heads", "refs/tags"] {
            try makeDirectories(path + "/" + directory)
        }
        try replace(
            "config", with: Array("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n".utf8))
        try setHead(defaultBranch)
    }

    /// Points the symbolic HEAD at `target`.
    public func setHead(_ target: RefName) throws(IOError) {
        try replace("HEAD", with: Array("ref: \(target.rawValue)\n".utf8))
    }

    /// Sets a loose reference (its parent directories are made as needed). Empty
    /// directories left where it goes (a deleted `refs/heads/a/b` leaves `refs/heads/a/`)
    /// are removed first, as git does.
    ///
    /// What is in the way is removed: a file where a leading part needs a directory, or a
    /// directory where the reference goes. Verification refuses names that conflict with
    /// live references, so this meets only empty directories left by deletions, or, when
    /// an entry is applied again after a crash, files of later entries that ran before it
    /// (which those entries, applied again too, put back).
    public func setReference(_ name: RefName, to oid: ObjectID) throws(IOError) {
        let bytes = Array((oid.hex + "\n").utf8)
        // The common case in one create, write and rename: its directory is there, no lock
        // file was left, no directory has its name. Anything else fails one of those three
        // (ENOENT, ENOTDIR, EEXIST, EISDIR) and takes the careful path below, which looks
        // at every leading component first (four or five lookups more per reference, a
        // third of what a reference update cost the apply thread on ext4).
        if quickReplace(name.rawValue, with: bytes) { return }
        let file = path + "/" + name.rawValue
        let parts = name.rawValue.split(separator: "/")
        for count in 1..<parts.count {
            let leading = path + "/" + parts[0..<count].joined(separator: "/")
            switch try FileSystem.kind(of: leading, followSymlinks: false) {
            case nil, .directory: continue
            default:
                try FileSystem.removeFile(leading)
                touched?.note(parentOf: leading)
                CrashPoints.reached()
            }
        }
        if try FileSystem.kind(of: file, followSymlinks: false) == .directory {
            try FileSystem.removeTree(file)
            touched?.note(parentOf: file)
            CrashPoints.reached()
        }
        try makeDirectories(String(file[..<file.lastIndex(of: "/")!]))
        try replace(name.rawValue, with: bytes)
    }

    /// Deletes a reference, loose and packed. Deleting a missing one changes nothing.
    public func deleteReference(_ name: RefName) throws(IOError) {
        try updateReferences(deleting: [name], setting: [])
    }

    /// A transaction's references of this repository: `deleting` removed (loose and
    /// packed) and `setting` written. Up to `looseUpdateLimit` updates are loose files,
    /// as `git update-ref` writes them; more are written into `packed-refs` in one rewrite
    /// (their loose files removed), as `git pack-refs` would leave them: one file created
    /// instead of one per reference, which on ext4 is what a large push costs (inode
    /// allocation for each lock file). Both are git's own formats.
    ///
    /// In the order git's readers (loose file first, then `packed-refs`) need: `packed-refs`
    /// first, then the loose values, then the loose files of the deletions. Such a reader
    /// meets each reference at its old value or its new one, never absent in between, and
    /// a deleted one never at an older packed value its loose file was hiding. (git's own
    /// `files_transaction_finish` writes the loose values first.) A deletion that makes room for a new
    /// name (`refs/heads/a` for `refs/heads/a/b`) is done by `setReference`, which removes
    /// whatever file or directory is in the way.
    public func updateReferences(deleting: [RefName], setting: [(RefName, ObjectID)]) throws(IOError) {
        let loose = setting.count <= Self.looseUpdateLimit
        // Into packed-refs, a new name and a deleted one in its way (`refs/heads/a` and
        // `refs/heads/a/b`) would both be live between the rewrite and the unlink, which
        // no state of the log has and which fails a clone: the deletions' loose files go
        // first in that case.
        let deletionsFirst = !loose && Self.namesClash(deleting, setting)
        if deletionsFirst { for name in deleting { try removeLoose(name) } }
        let packedChanges = loose ? [] : setting
        if !deleting.isEmpty || !packedChanges.isEmpty, let existing = try read("packed-refs") ?? (loose ? nil : []) {
            // The packed values first, then the loose files that would hide them.
            if let rewritten = PackedRefs(existing).rewritten(setting: packedChanges, removing: deleting) {
                // Durable before it replaces the old file: re-applying the entries after the
                // last checkpoint starts from this file's content, which must not be lost.
                try replace("packed-refs", with: rewritten, durable: true)
            }
        }
        if loose {
            for (name, oid) in setting { try setReference(name, to: oid) }
        } else {
            for (name, _) in setting { try removeLoose(name) }
        }
        if !deletionsFirst { for name in deleting { try removeLoose(name) } }
    }

    /// Whether a deleted name is a leading directory of a name set, or the reverse.
    static func namesClash(_ deleting: [RefName], _ setting: [(RefName, ObjectID)]) -> Bool {
        guard !deleting.isEmpty, !setting.isEmpty else { return false }
        func directories(_ name: String) -> [Substring] {
            name.indices.filter { name[$0] == "/" }.map { name[..<$0] }
        }
        let set = Set(setting.map { Substring($0.0.rawValue) })
        let setDirectories = Set(setting.flatMap { directories($0.0.rawValue) })
        for name in deleting {
            if setDirectories.contains(Substring(name.rawValue)) { return true }
            if directories(name.rawValue).contains(where: set.contains) { return true }
        }
        return false
    }

    /// Transactions with more reference updates than this write them into `packed-refs`.
    public static let looseUpdateLimit = 16

    /// Removes the loose file of `name`. A directory there is not this reference (other
    /// references live in it, or it is empty): left as it is.
    private func removeLoose(_ name: RefName) throws(IOError) {
        let loose = path + "/" + name.rawValue
        switch try FileSystem.kind(of: loose, followSymlinks: false) {
        case nil, .directory: return
        default:
            try FileSystem.removeFile(loose)
            touched?.note(parentOf: loose)
            CrashPoints.reached()
        }
    }

    /// The parsed `packed-refs` (empty when there is none): for many lookups at once.
    func packedReferences() throws(IOError) -> PackedRefs { PackedRefs(try read("packed-refs") ?? []) }

    /// The reference's value: the loose file, else packed-refs (`packed`, when the caller
    /// parsed it already); nil when it does not exist.
    public func reference(_ name: RefName) throws(IOError) -> ObjectID? { try reference(name, packed: nil) }

    func reference(_ name: RefName, packed: PackedRefs?) throws(IOError) -> ObjectID? {
        if try FileSystem.kind(of: path + "/" + name.rawValue, followSymlinks: false) == .regularFile,
            let loose = try read(name.rawValue)
        {
            let text = String(decoding: loose, as: UTF8.self).trimmingSuffixNewline
            return try? ObjectID(hex: text)
        }
        if let packed { return packed.value(name) }
        return try packedReferences().value(name)
    }

    /// Every reference under `refs/`: loose files override `packed-refs`. Symbolic and
    /// unreadable loose files are skipped, as git skips broken refs when listing.
    public func references() throws(IOError) -> [RefName: ObjectID] {
        var out: [RefName: ObjectID] = [:]
        for (name, oid) in try packedReferences().all { out[name] = oid }
        var directories = ["refs"]
        while let directory = directories.popLast() {
            guard FileSystem.exists(path + "/" + directory) else { continue }
            for entry in try FileSystem.list(path + "/" + directory) where !entry.hasSuffix(".lock") {
                let relative = directory + "/" + entry
                if try FileSystem.kind(of: path + "/" + relative, followSymlinks: false) == .directory {
                    directories.append(relative)
                } else if let name = try? RefName(relative), let value = try reference(name, packed: PackedRefs([])) {
                    out[name] = value
                }
            }
        }
        return out
    }

    /// Adds a pack: hard links (same file system) `pack` and then `index` into
    /// `objects/pack/pack-<checksum>.{pack,idx}`, the index last (git uses a pack only once
    /// its index exists). Returns the pack's name. Already there: nothing changes.
    @discardableResult
    public func attachPack(pack: String, index: String) throws(IOError) -> String {
        let checksum = try packChecksum(pack)
        let base = path + "/objects/pack/pack-" + checksum
        try makeDirectories(path + "/objects/pack")
        // Already there, but cut short by a power failure before its checkpoint: replaced.
        // Both files end with the pack's checksum (the index: before its own checksum).
        for (source, target, trailerEnd) in [(pack, base + ".pack", 0), (index, base + ".idx", ObjectID.byteCount)] {
            if FileSystem.exists(target) {
                if try trailer(of: target, endingBefore: trailerEnd) == checksum { continue }
                try FileSystem.removeFile(target)
            }
            try FileSystem.link(source, to: target)
            CrashPoints.reached()
        }
        touched?.note(base + ".pack")
        touched?.note(base + ".idx")
        touched?.note(parentOf: base + ".idx")
        return "pack-" + checksum
    }

    /// Makes the repository borrow objects from the pool at `poolPath` (its `objects`
    /// directory named in `objects/info/alternates`), or stop borrowing (nil).
    public func setAlternates(pool poolPath: String?) throws(IOError) {
        guard let poolPath else {
            let file = path + "/objects/info/alternates"
            if FileSystem.exists(file) {
                try FileSystem.removeFile(file)
                touched?.note(parentOf: file)
                CrashPoints.reached()
            }
            return
        }
        try makeDirectories(path + "/objects/info")
        try replace("objects/info/alternates", with: Array((poolPath + "/objects\n").utf8))
    }

    /// Makes `path` and the given subdirectories.
    func makeLayout(_ subdirectories: [String]) throws(IOError) {
        try makeDirectories(path)
        for sub in subdirectories { try makeDirectories(path + "/" + sub) }
    }

    /// A file's bytes, or nil when it does not exist.
    func contents(_ relative: String) throws(IOError) -> [UInt8]? { try read(relative) }

    /// Writes a file of the repository's own (e.g. a pack to link) by lock file and rename.
    func writeFile(_ relative: String, _ bytes: [UInt8], durable: Bool = false) throws(IOError) {
        try replace(relative, with: bytes, durable: durable)
    }

    /// Deletes lock files a crash left (`HEAD.lock`, `packed-refs.lock`, `config.lock`,
    /// `refs/**.lock`). Returns how many.
    @discardableResult
    public func removeStaleLocks() throws(IOError) -> Int {
        var removed = 0
        for name in ["HEAD.lock", "packed-refs.lock", "config.lock", "objects/info/alternates.lock"]
        where FileSystem.exists(path + "/" + name) {
            try FileSystem.removeFile(path + "/" + name)
            removed += 1
        }
        var directories = [path + "/refs"]
        while let directory = directories.popLast() {
            guard FileSystem.exists(directory) else { continue }
            for entry in try FileSystem.list(directory) {
                let full = directory + "/" + entry
                if try FileSystem.kind(of: full, followSymlinks: false) == .directory {
                    directories.append(full)
                } else if entry.hasSuffix(".lock") {
                    try FileSystem.removeFile(full)
                    removed += 1
                }
            }
        }
        return removed
    }

    // MARK: - Files

    /// Writes `<name>.lock` and renames it to `<name>`.
    ///
    /// Missing parent directories are made: re-applied after a crash, an operation may meet
    /// the state of later entries (its repository removed by one that ran before the
    /// crash), and it must still succeed; the later entries, applied again, converge.
    ///
    /// `durable`: the new content is fsynced before the rename, so a power failure leaves
    /// the old content or the new, never an empty file (for files whose old content matters).
    private func replace(_ name: String, with bytes: [UInt8], durable: Bool = false) throws(IOError) {
        let target = path + "/" + name
        let lock = target + ".lock"
        try makeDirectories(String(target[..<target.lastIndex(of: "/")!]))
        if FileSystem.exists(lock) { try FileSystem.removeFile(lock) }
        let file = try DiskFile.open(lock, .createNew)
        let written = bytes.withUnsafeBytes { raw in
            Result { () throws(IOError) in
                try file.write(toAbsoluteOffset: 0, raw)
                if durable { try file.sync() }
            }
        }
        try? file.close()
        try written.get()
        CrashPoints.reached()
        try FileSystem.rename(lock, to: target)
        CrashPoints.reached()
        touched?.note(target)
        touched?.note(parentOf: target)
    }

    /// `replace` without looking first: false, with nothing changed, when a directory on
    /// the way is missing or is a file, a symbolic link is on the way (never followed: the
    /// careful path replaces it), a lock file is there, the name is a directory, or the
    /// write fails (the careful path meets the same and says why).
    private func quickReplace(_ name: String, with bytes: [UInt8]) -> Bool {
        let done = bytes.withUnsafeBytes { raw in
            craft_replace_beneath(path, name, raw.baseAddress, raw.count) == 0
        }
        guard done else { return false }
        CrashPoints.reached()
        touched?.note(path + "/" + name)
        touched?.note(parentOf: path + "/" + name)
        return true
    }

    private func read(_ name: String) throws(IOError) -> [UInt8]? {
        try FileSystem.readFileIfExists(path + "/" + name)
    }

    /// The 20 bytes that end `skipping` bytes before the end of the file, in hexadecimal
    /// ("" when the file is shorter).
    private func trailer(of path: String, endingBefore skipping: Int) throws(IOError) -> String {
        let file = try DiskFile.open(path, .readOnly)
        defer { try? file.close() }
        let size = try file.size()
        guard size >= UInt64(ObjectID.byteCount + skipping) else { return "" }
        var bytes = [UInt8](repeating: 0, count: ObjectID.byteCount)
        _ = try bytes.withUnsafeMutableBytes { raw in
            Result { () throws(IOError) in
                try file.readFully(fromAbsoluteOffset: size - UInt64(ObjectID.byteCount + skipping), into: raw)
            }
        }.get()
        return (try? ObjectID(bytes: bytes))?.hex ?? ""
    }

    /// The SHA-1 checksum in a pack's 20-byte trailer, in hexadecimal: git's name for it.
    private func packChecksum(_ pack: String) throws(IOError) -> String {
        let file = try DiskFile.open(pack, .readOnly)
        defer { try? file.close() }
        let size = try file.size()
        guard size >= 32 else { throw IOError("pack trailer", path: pack, code: EINVAL) }
        var trailer = [UInt8](repeating: 0, count: ObjectID.byteCount)
        _ = try trailer.withUnsafeMutableBytes { raw in
            Result { () throws(IOError) in
                try file.readFully(fromAbsoluteOffset: size - UInt64(ObjectID.byteCount), into: raw)
            }
        }.get()
        return (try? ObjectID(bytes: trailer))?.hex ?? ""
    }

    /// Makes `directory` and any missing parents.
    private func makeDirectories(_ directory: String) throws(IOError) {
        if FileSystem.exists(directory) { return }
        if let slash = directory.lastIndex(of: "/"), slash != directory.startIndex {
            try makeDirectories(String(directory[..<slash]))
        }
        do {
            try FileSystem.makeDirectory(directory)
            touched?.note(parentOf: directory)
            CrashPoints.reached()
        } catch  where error.kind == .alreadyExists {
            return
        }
    }
}

extension String {
    fileprivate var trimmingSuffixNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}

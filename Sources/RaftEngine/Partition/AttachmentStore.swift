import CRaftIO
import Synchronization

/// Distinguishes the temporary files of every write in this process: two writers of the
/// same attachment never share (or delete) one another's file.
private let temporaryTags = Atomic<UInt64>(0)

/// SHA-256 of a byte sequence (the content address of an attachment).
public enum SHA256 {
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var context = craft_sha256()
        craft_sha256_init(&context)
        bytes.withUnsafeBytes { craft_sha256_update(&context, $0.baseAddress, $0.count) }
        var digest = [UInt8](repeating: 0, count: 32)
        digest.withUnsafeMutableBufferPointer { craft_sha256_final(&context, $0.baseAddress!) }
        return digest
    }

    /// SHA-256 over data that arrives in pieces.
    public struct Hasher {
        private var context = craft_sha256()

        public init() { craft_sha256_init(&context) }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            craft_sha256_update(&context, bytes.baseAddress, bytes.count)
        }

        public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

        public mutating func finish() -> [UInt8] {
            var digest = [UInt8](repeating: 0, count: 32)
            digest.withUnsafeMutableBufferPointer { craft_sha256_final(&context, $0.baseAddress!) }
            return digest
        }
    }

    public static func hex(_ digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }, as: UTF8.self)
    }
}

/// A replica's attachments: packs (with their index) too large to travel inside a log
/// entry, as content-addressed files `attachments/<sha256>.{pack,idx}` in the replica's
/// partition directory, where the SHA-256 is over the pack and then the index. An
/// attachment is durable before the entry that names it enters this replica's log: each
/// file is written under a temporary name, fsynced, renamed (the index last: an attachment
/// counts as present once its index is there with its size), and the directory fsynced.
/// Apply hard-links them into the repository (`objects/pack`).
public struct AttachmentStore: Sendable {
    public let directory: String
    static let extensions = ["pack", "idx"]
    /// Attachments are written in steps of this size, each handed to the kernel's writeback
    /// at once: the final fsync then has little left, and the WAL's fdatasyncs on the same
    /// disk do not wait behind hundreds of MiB flushed in one go.
    static let writebackStep = 4 << 20

    public init(directory: String) { self.directory = directory }

    /// The attachment's files, in the order of its parts (pack, index).
    public func paths(_ id: AttachmentID) -> [String] {
        let stem = directory + "/" + id.hex
        return Self.extensions.map { stem + "." + $0 }
    }

    /// The name a pack and its index are stored under.
    public static func id(pack: [UInt8], index: [UInt8]) throws(PartitionError) -> AttachmentID {
        var hasher = SHA256.Hasher()
        hasher.update(pack)
        hasher.update(index)
        do {
            return try AttachmentID(hash: hasher.finish(), sizes: [UInt64(pack.count), UInt64(index.count)])
        } catch {
            throw .attachment("\(error)")
        }
    }

    /// A temporary name for `path` that no other write of this process uses.
    static func temporary(_ path: String) -> String {
        "\(path).\(temporaryTags.add(1, ordering: .relaxed).newValue).tmp"
    }

    /// Stores a pack and its index; returns their name. Storing one that is there already
    /// rewrites nothing.
    public func put(pack: [UInt8], index: [UInt8]) throws(PartitionError) -> AttachmentID {
        let id = try Self.id(pack: pack, index: index)
        let files = paths(id)
        try storage { () throws(IOError) in
            if !FileSystem.exists(directory) { try FileSystem.makeDirectory(directory) }
            for (path, bytes) in zip(files, [pack, index]) {
                if Self.size(of: path) == UInt64(bytes.count) { continue }
                let temporary = Self.temporary(path)
                let file = try DiskFile.open(temporary, .createNew)
                defer { try? file.close() }
                do throws(IOError) {
                    // In steps, each handed to writeback at once (see `writebackStep`).
                    try bytes.withUnsafeBytes { raw in
                        Result { () throws(IOError) in
                            for start in stride(from: 0, to: raw.count, by: Self.writebackStep) {
                                let end = min(start + Self.writebackStep, raw.count)
                                try file.write(
                                    toAbsoluteOffset: UInt64(start), UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                                file.startWriteback(offset: UInt64(start), length: UInt64(end - start))
                                CrashPoints.reached()
                                if start >= Self.writebackStep {
                                    file.awaitWriteback(
                                        offset: UInt64(start - Self.writebackStep), length: UInt64(Self.writebackStep))
                                }
                            }
                        }
                    }.get()
                    try file.sync()
                    CrashPoints.reached()
                    try file.rename(to: path)
                    CrashPoints.reached()
                } catch {
                    try? FileSystem.removeFile(temporary)
                    throw error
                }
            }
            try DiskFile.syncDirectory(directory)
            CrashPoints.reached()
        }
        return id
    }

    /// Whether the attachment is here with the sizes its name gives.
    public func contains(_ id: AttachmentID) -> Bool {
        guard id.sizes.count == Self.extensions.count else { return false }
        return zip(paths(id), id.sizes).allSatisfy { Self.size(of: $0) == $1 }
    }

    /// `length` bytes at `offset` of the attachment's parts concatenated (serving a peer).
    public func read(_ id: AttachmentID, offset: UInt64, length: Int) throws(PartitionError) -> [UInt8] {
        guard contains(id) else { throw .attachment("\(id) is not on this replica") }
        guard length >= 0, offset <= id.totalBytes, UInt64(length) <= id.totalBytes - offset else {
            throw .attachment("a read of \(length) bytes at \(offset) is outside \(id)")
        }
        var out = [UInt8](repeating: 0, count: length)
        var partStart: UInt64 = 0
        var done = 0
        for (path, size) in zip(paths(id), id.sizes) {
            let partEnd = partStart + size
            let at = offset + UInt64(done)
            if done < length, at < partEnd {
                let count = Int(min(UInt64(length - done), partEnd - at))
                let from = at - partStart
                let got = try storage { () throws(IOError) -> Int in
                    let file = try DiskFile.open(path, .readOnly)
                    defer { try? file.close() }
                    return try out.withUnsafeMutableBytes { raw in
                        Result { () throws(IOError) in
                            try file.readFully(
                                fromAbsoluteOffset: from,
                                into: UnsafeMutableRawBufferPointer(rebasing: raw[done..<(done + count)]))
                        }
                    }.get()
                }
                guard got == count else { throw .attachment("\(path) ended early (changed under the replica?)") }
                done += count
            }
            partStart = partEnd
        }
        return out
    }

    /// Starts receiving an attachment from a peer, into temporary files of its own.
    public func receive(_ id: AttachmentID) throws(PartitionError) -> AttachmentReceiver {
        guard id.sizes.count == Self.extensions.count else {
            throw .attachment("\(id) has \(id.sizes.count) parts; a pack attachment has \(Self.extensions.count)")
        }
        return try AttachmentReceiver(store: self, id: id)
    }

    /// The size of the regular file at `path`, or nil.
    static func size(of path: String) -> UInt64? {
        guard (try? FileSystem.kind(of: path, followSymlinks: false)) == .regularFile,
            let file = try? DiskFile.open(path, .readOnly)
        else { return nil }
        defer { try? file.close() }
        return try? file.size()
    }

    /// At open: removes temporary files of writes a crash interrupted, and makes durable
    /// what a crash of the process left renamed but perhaps not yet flushed (the files and
    /// the directory), so that an attachment found here is one that survives a power loss.
    public func recover() throws(IOError) {
        guard FileSystem.exists(directory) else { return }
        for name in try FileSystem.list(directory) {
            let path = directory + "/" + name
            if name.hasSuffix(".tmp") {
                try FileSystem.removeFile(path)
            } else if (try? FileSystem.kind(of: path, followSymlinks: false)) == .regularFile {
                let file = try DiskFile.open(path, .readOnly)
                defer { try? file.close() }
                try file.sync()
            }
        }
        try DiskFile.syncDirectory(directory)
    }
}

/// An attachment arriving from a peer, in order: bytes are written to temporary files and
/// hashed as they come; `finish` checks the hash and sizes, makes the files durable and
/// renames them into place. Used by one task at a time.
public final class AttachmentReceiver: @unchecked Sendable {
    public let id: AttachmentID
    public private(set) var received: UInt64 = 0
    private let store: AttachmentStore
    private let temporaries: [String]
    private var files: [DiskFile] = []
    private var hasher = SHA256.Hasher()
    /// Per part, the offset up to which writeback was started, and up to which it ended.
    private var writebackFrom: [UInt64]
    private var writebackWaited: [UInt64]

    fileprivate init(store: AttachmentStore, id: AttachmentID) throws(PartitionError) {
        self.store = store
        self.id = id
        writebackFrom = id.sizes.map { _ in 0 }
        writebackWaited = id.sizes.map { _ in 0 }
        temporaries = store.paths(id).map(AttachmentStore.temporary)
        let temporaries = self.temporaries
        files = try storage { () throws(IOError) -> [DiskFile] in
            if !FileSystem.exists(store.directory) { try FileSystem.makeDirectory(store.directory) }
            var opened: [DiskFile] = []
            for path in temporaries { opened.append(try DiskFile.open(path, .createNew)) }
            return opened
        }
    }

    deinit { abandon() }

    /// Appends the next bytes of the parts concatenated.
    public func write(_ bytes: [UInt8]) throws(PartitionError) {
        guard UInt64(bytes.count) <= id.totalBytes - received else {
            throw .attachment("\(id): a peer sent more bytes than the attachment has")
        }
        hasher.update(bytes)
        var done = 0
        var partStart: UInt64 = 0
        for (k, size) in id.sizes.enumerated() {
            let partEnd = partStart + size
            if done < bytes.count, received < partEnd {
                let count = Int(min(UInt64(bytes.count - done), partEnd - received))
                let at = received - partStart
                let file = files[k]
                let start = done
                try storage { () throws(IOError) in
                    try bytes.withUnsafeBytes { raw in
                        Result { () throws(IOError) in
                            try file.write(
                                toAbsoluteOffset: at, UnsafeRawBufferPointer(rebasing: raw[start..<(start + count)]))
                        }
                    }.get()
                }
                done += count
                received += UInt64(count)
                CrashPoints.reached()
                let written = received - partStart
                if written - writebackFrom[k] >= UInt64(AttachmentStore.writebackStep) || written == size {
                    file.startWriteback(offset: writebackFrom[k], length: written - writebackFrom[k])
                    // The step before this one: wait for it, so at most two are queued.
                    file.awaitWriteback(offset: writebackWaited[k], length: writebackFrom[k] - writebackWaited[k])
                    writebackWaited[k] = writebackFrom[k]
                    writebackFrom[k] = written
                }
            }
            partStart = partEnd
        }
    }

    /// Checks that every byte came and that they hash to the name, then makes the files
    /// durable under their names. Damage throws and leaves nothing behind.
    public func finish() throws(PartitionError) {
        guard received == id.totalBytes else {
            throw .attachment("\(id): received \(received) of \(id.totalBytes) bytes")
        }
        let digest = hasher.finish()
        guard digest == id.hash else {
            abandon()
            throw .attachment("\(id): the received bytes hash to \(SHA256.hex(digest).prefix(16)); damaged in transit")
        }
        let finals = store.paths(id)
        let files = self.files
        let directory = store.directory
        try storage { () throws(IOError) in
            for (file, path) in zip(files, finals) {
                try file.sync()
                CrashPoints.reached()
                try file.rename(to: path)
                CrashPoints.reached()
            }
            try DiskFile.syncDirectory(directory)
            CrashPoints.reached()
        }
        for file in files { try? file.close() }
        self.files = []
    }

    /// Drops the temporary files (a failed or cancelled transfer).
    public func abandon() {
        for file in files { try? file.close() }
        files = []
        for path in temporaries { try? FileSystem.removeFile(path) }
    }
}

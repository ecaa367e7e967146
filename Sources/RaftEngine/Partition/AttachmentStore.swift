import CRaftIO

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

    public static func hex(_ digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }, as: UTF8.self)
    }
}

/// A replica's attachments: packs (with their index) too large to travel inside a log
/// entry, as content-addressed files `attachments/<sha256 of the pack>.{pack,idx}` in the
/// replica's partition directory. An attachment is durable before the entry that names it
/// is proposed: each file is written under a temporary name, fsynced, renamed, and the
/// directory fsynced. Apply hard-links them into the repository (`objects/pack`).
public struct AttachmentStore: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func paths(_ hash: [UInt8]) -> (pack: String, index: String) {
        let stem = directory + "/" + SHA256.hex(hash)
        return (stem + ".pack", stem + ".idx")
    }

    /// Stores a pack and its index; returns the pack's SHA-256 (its name). Storing one that
    /// is there already rewrites nothing.
    public func put(pack: [UInt8], index: [UInt8]) throws(PartitionError) -> [UInt8] {
        let hash = SHA256.hash(pack)
        let (packPath, indexPath) = paths(hash)
        try storage { () throws(IOError) in
            if !FileSystem.exists(directory) { try FileSystem.makeDirectory(directory) }
            // The index last: an attachment counts as present once its index is there.
            for (path, bytes) in [(packPath, pack), (indexPath, index)] {
                if Self.size(of: path) == UInt64(bytes.count) { continue }
                let temporary = path + ".tmp"
                if FileSystem.exists(temporary) { try FileSystem.removeFile(temporary) }
                let file = try DiskFile.open(temporary, .createNew)
                defer { try? file.close() }
                try bytes.withUnsafeBytes { raw in
                    Result { () throws(IOError) in try file.write(toAbsoluteOffset: 0, raw) }
                }.get()
                try file.sync()
                try file.rename(to: path)
            }
            try DiskFile.syncDirectory(directory)
        }
        return hash
    }

    /// Whether the attachment is here with the sizes its entry names.
    public func contains(_ hash: [UInt8], packBytes: UInt64, indexBytes: UInt64) -> Bool {
        let (packPath, indexPath) = paths(hash)
        return Self.size(of: packPath) == packBytes && Self.size(of: indexPath) == indexBytes
    }

    /// The size of the regular file at `path`, or nil.
    private static func size(of path: String) -> UInt64? {
        guard (try? FileSystem.kind(of: path, followSymlinks: false)) == .regularFile,
            let file = try? DiskFile.open(path, .readOnly)
        else { return nil }
        defer { try? file.close() }
        return try? file.size()
    }

    /// Removes temporary files of writes a crash interrupted.
    public func removeLeftovers() throws(IOError) {
        guard FileSystem.exists(directory) else { return }
        for name in try FileSystem.list(directory) where name.hasSuffix(".tmp") {
            try FileSystem.removeFile(directory + "/" + name)
        }
    }
}

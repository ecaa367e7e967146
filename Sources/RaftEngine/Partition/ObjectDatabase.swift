/// Answers "does this repository have object X?" by reading git's files directly: loose
/// objects (`objects/xx/<38 hex>`), pack indexes (`objects/pack/*.idx`, version 2) and the
/// object directories named in `objects/info/alternates` (an object pool). No `git`
/// process: a ref update that carries no pack is checked on the leader's hot path.
///
/// Objects are only ever added to a repository by apply (packs, hard-linked), so a yes
/// stays true; a no is re-checked against indexes that appeared since (they are listed on
/// every call, and read once).
public final class ObjectDatabase {
    /// The `objects` directory of the repository, then those of its alternates.
    public let directories: [String]
    /// Pack index contents already read, by path.
    private var indexes: [String: PackIndex] = [:]

    /// The object database of the bare repository at `repository`: its own objects and,
    /// one level deep, its alternates (git allows chains; pools here never have any).
    public init(repository: String) throws(PartitionError) {
        let own = repository + "/objects"
        var directories = [own]
        if let alternates = try storage({ () throws(IOError) in
            try FileSystem.readFileIfExists(own + "/info/alternates")
        }) {
            for line in String(decoding: alternates, as: UTF8.self).split(separator: "\n") {
                var path = Substring(line)
                while let c = path.last, c == " " || c == "\t" || c == "\r" { path.removeLast() }
                while let c = path.first, c == " " || c == "\t" { path.removeFirst() }
                guard !path.isEmpty, !path.hasPrefix("#") else { continue }
                directories.append(path.hasPrefix("/") ? String(path) : own + "/" + path)
            }
        }
        self.directories = directories
    }

    /// Whether any of the object directories holds `oid`: loose objects, then the pack
    /// indexes already read, then indexes that appeared since (listed on a miss only).
    public func contains(_ oid: ObjectID) throws(PartitionError) -> Bool {
        let hex = oid.hex
        for directory in directories {
            let loose = directory + "/" + hex.prefix(2) + "/" + hex.dropFirst(2)
            if FileSystem.exists(loose) { return true }
        }
        if indexes.values.contains(where: { $0.contains(oid) }) { return true }
        var found = false
        for directory in directories {
            let packDirectory = directory + "/pack"
            guard FileSystem.exists(packDirectory) else { continue }
            for name in try storage({ () throws(IOError) in try FileSystem.list(packDirectory) })
            where name.hasSuffix(".idx") {
                let path = packDirectory + "/" + name
                guard indexes[path] == nil else { continue }
                guard let bytes = try storage({ () throws(IOError) in try FileSystem.readFileIfExists(path) })
                else { continue }
                let index = try PackIndex(bytes, path: path)
                indexes[path] = index
                found = found || index.contains(oid)
            }
        }
        return found
    }
}

/// Runs a file-system call, reporting its failure as a partition storage error.
func storage<T>(_ body: () throws(IOError) -> T) throws(PartitionError) -> T {
    do { return try body() } catch { throw .storage("\(error)") }
}

/// A version 2 pack index (`git help format-pack`): magic `\377tOc`, version 2, a fanout
/// table of 256 cumulative counts, then the sorted object names.
struct PackIndex {
    let bytes: [UInt8]
    let count: Int
    static let namesOffset = 8 + 256 * 4

    init(_ bytes: [UInt8], path: String) throws(PartitionError) {
        guard bytes.count >= Self.namesOffset, bytes[0..<8].elementsEqual([0xFF, 0x74, 0x4F, 0x63, 0, 0, 0, 2])
        else {
            throw .storage("\(path): not a version 2 pack index")
        }
        let count = Int(Self.u32(bytes, 8 + 255 * 4))
        guard bytes.count >= Self.namesOffset + count * ObjectID.byteCount else {
            throw .storage("\(path): shorter than its \(count) object names")
        }
        self.bytes = bytes
        self.count = count
    }

    static func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }

    /// Every object name, in order.
    var names: [ObjectID] {
        (0..<count).map { k in
            let at = Self.namesOffset + k * ObjectID.byteCount
            return try! ObjectID(bytes: bytes[at..<(at + ObjectID.byteCount)])
        }
    }

    /// Binary search within the names sharing the first byte (the fanout bounds them).
    func contains(_ oid: ObjectID) -> Bool {
        let first = Int(oid.bytes[0])
        var lo = first == 0 ? 0 : Int(Self.u32(bytes, 8 + (first - 1) * 4))
        var hi = Int(Self.u32(bytes, 8 + first * 4))
        guard hi <= count, lo <= hi else { return false }
        while lo < hi {
            let mid = (lo + hi) / 2
            let at = Self.namesOffset + mid * ObjectID.byteCount
            var order = 0
            for k in 0..<ObjectID.byteCount where bytes[at + k] != oid.bytes[k] {
                order = bytes[at + k] < oid.bytes[k] ? -1 : 1
                break
            }
            if order == 0 { return true }
            if order < 0 { lo = mid + 1 } else { hi = mid }
        }
        return false
    }
}

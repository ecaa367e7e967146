#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A repository's `packed-refs` file, as git writes and reads it (`git help
/// gitrepository-layout`): an optional `# pack-refs with: <traits>` header, then
/// `<oid> <refname>` lines sorted by name, each optionally followed by `^<oid>`, the peeled
/// value of an annotated tag.
///
/// Works on the bytes: a repository can hold hundreds of thousands of references, and a
/// transaction that changes a hundred of them must cost a merge of the file (one pass,
/// records copied as they are), not a parse of every line into strings. Lookups are binary
/// searches over the sorted records.
struct PackedRefs {
    let bytes: [UInt8]
    /// One record: its line (and the `^` line after it, if any), and where its name is.
    struct Record {
        var start: Int
        var nameStart: Int
        var nameEnd: Int
        /// The end of the record, its peeled line included (just past its newline).
        var end: Int
        var hasPeeled: Bool
    }
    private(set) var records: [Record] = []
    /// The traits of the header, nil when the file had none.
    private(set) var traits: [String]?

    static let oidLength = ObjectID.byteCount * 2

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var position = 0
        var sorted = false
        while position < bytes.count {
            var end = position
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            let next = min(end + 1, bytes.count)
            let first = bytes[position]
            if first == UInt8(ascii: "#") {
                let line = String(decoding: bytes[position..<end], as: UTF8.self)
                if line.hasPrefix("# pack-refs with:") {
                    let list = line.dropFirst("# pack-refs with:".count).split(separator: " ").map(String.init)
                    traits = list
                    sorted = list.contains("sorted")
                }
            } else if first == UInt8(ascii: "^") {
                if !records.isEmpty && records[records.count - 1].end == position {
                    records[records.count - 1].end = next
                    records[records.count - 1].hasPeeled = true
                }
            } else if end - position > Self.oidLength + 1 && bytes[position + Self.oidLength] == UInt8(ascii: " ") {
                records.append(
                    Record(
                        start: position, nameStart: position + Self.oidLength + 1, nameEnd: end, end: next,
                        hasPeeled: false))
            }
            position = next
        }
        if !sorted {
            var list = records
            list.sort { compare($0, $1) < 0 }
            records = list
        }
    }

    /// Byte order of two records' names.
    private func compare(_ a: Record, _ b: Record) -> Int32 {
        bytes.withUnsafeBufferPointer { p in
            let n = min(a.nameEnd - a.nameStart, b.nameEnd - b.nameStart)
            let c = memcmp(p.baseAddress! + a.nameStart, p.baseAddress! + b.nameStart, n)
            if c != 0 { return c }
            return Int32(a.nameEnd - a.nameStart) - Int32(b.nameEnd - b.nameStart)
        }
    }

    /// Byte order of a record's name and `name`.
    private func compare(_ record: Record, _ name: [UInt8]) -> Int32 {
        bytes.withUnsafeBufferPointer { p in
            name.withUnsafeBufferPointer { q in
                let length = record.nameEnd - record.nameStart
                let c = memcmp(p.baseAddress! + record.nameStart, q.baseAddress!, min(length, q.count))
                if c != 0 { return c }
                return Int32(length) - Int32(q.count)
            }
        }
    }

    /// The record index holding `name`, or where it would go.
    private func search(_ name: [UInt8]) -> (index: Int, found: Bool) {
        var lo = 0
        var hi = records.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let c = compare(records[mid], name)
            if c == 0 { return (mid, true) }
            if c < 0 { lo = mid + 1 } else { hi = mid }
        }
        return (lo, false)
    }

    func value(_ name: RefName) -> ObjectID? {
        let (index, found) = search(Array(name.rawValue.utf8))
        guard found else { return nil }
        let r = records[index]
        return try? ObjectID(hex: String(decoding: bytes[r.start..<(r.start + Self.oidLength)], as: UTF8.self))
    }

    /// Whether a record's name starts with `prefix` (binary search for the first candidate).
    func hasName(withPrefix prefix: [UInt8], excluding skip: (String) -> Bool) -> Bool {
        var index = search(prefix).index
        while index < records.count {
            let r = records[index]
            let length = r.nameEnd - r.nameStart
            guard length >= prefix.count, bytes[r.nameStart..<(r.nameStart + prefix.count)].elementsEqual(prefix) else {
                return false
            }
            if !skip(String(decoding: bytes[r.nameStart..<r.nameEnd], as: UTF8.self)) { return true }
            index += 1
        }
        return false
    }

    /// Every record as (name, value); names that are not valid references are skipped.
    var all: [(RefName, ObjectID)] {
        records.compactMap { r in
            guard let name = try? RefName(String(decoding: bytes[r.nameStart..<r.nameEnd], as: UTF8.self)),
                let oid = try? ObjectID(
                    hex: String(decoding: bytes[r.start..<(r.start + Self.oidLength)], as: UTF8.self))
            else { return nil }
            return (name, oid)
        }
    }

    /// The file after removing `removing` and setting `setting` (nil when nothing changes).
    /// Records are merged in name order and copied as they are; a set record loses its
    /// peeled line, so the header stops claiming that tags are peeled (git then peels each
    /// itself, which is always correct).
    func rewritten(setting: [(RefName, ObjectID)], removing: [RefName]) -> [UInt8]? {
        // Changes in name order; a later change of the same name wins.
        var changes: [[UInt8]: ObjectID?] = [:]
        for name in removing { changes[Array(name.rawValue.utf8)] = .some(nil) }
        for (name, oid) in setting { changes[Array(name.rawValue.utf8)] = .some(oid) }
        let ordered = changes.keys.sorted { $0.lexicographicallyPrecedes($1) }
        let anySet = !setting.isEmpty
        var changed = anySet
        // No header: git assumes no traits, so nothing may be claimed about peeling.
        var traits = self.traits ?? []
        if anySet { traits.removeAll { $0 == "peeled" || $0 == "fully-peeled" } }
        if !traits.contains("sorted") { traits.append("sorted") }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + setting.count * 100)
        out += Array(("# pack-refs with: " + traits.joined(separator: " ") + " \n").utf8)
        func emit(_ name: [UInt8], _ oid: ObjectID) {
            out += Array(oid.hex.utf8)
            out.append(UInt8(ascii: " "))
            out += name
            out.append(UInt8(ascii: "\n"))
        }
        var j = 0
        for record in records {
            while j < ordered.count && compare(record, ordered[j]) > 0 {
                if let oid = changes[ordered[j]]! { emit(ordered[j], oid) }
                j += 1
            }
            if j < ordered.count && compare(record, ordered[j]) == 0 {
                if let oid = changes[ordered[j]]! { emit(ordered[j], oid) }
                changed = true
                j += 1
                continue
            }
            if j > 0 && compare(record, ordered[j - 1]) == 0 {
                // A duplicate of a name just changed (a damaged file): dropped with it.
                changed = true
                continue
            }
            out += bytes[record.start..<record.end]
            if bytes[record.end - 1] != UInt8(ascii: "\n") { out.append(UInt8(ascii: "\n")) }
        }
        while j < ordered.count {
            if let oid = changes[ordered[j]]! { emit(ordered[j], oid) }
            j += 1
        }
        return changed ? out : nil
    }
}

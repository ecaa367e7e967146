/// A repository's `packed-refs` file, as git writes and reads it (`git help gitrepository-layout`):
/// an optional `# pack-refs with: <traits>` header, then `<oid> <refname>` lines sorted
/// by name, each optionally followed by `^<oid>`, the peeled value of an annotated tag.
struct PackedRefs: Equatable {
    struct Record: Equatable {
        var oid: String
        /// The `^<oid>` line after it, without the caret.
        var peeled: String?
    }

    /// The traits of the header, nil when the file had none.
    var traits: [Substring]?
    var records: [String: Record] = [:]

    init(_ bytes: [UInt8]) {
        var last: String?
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("# pack-refs with:") {
                traits = line.dropFirst("# pack-refs with:".count).split(separator: " ")
            } else if line.hasPrefix("#") {
                continue
            } else if line.hasPrefix("^") {
                if let name = last { records[name]?.peeled = String(line.dropFirst()) }
            } else if let space = line.firstIndex(of: " ") {
                let name = String(line[line.index(after: space)...])
                records[name] = Record(oid: String(line[..<space]), peeled: nil)
                last = name
            }
        }
    }

    /// Sets `name` to `oid`. Its peeled value is dropped (git peels it itself when needed),
    /// so the header must stop claiming that every tag is peeled.
    mutating func set(_ name: RefName, _ oid: ObjectID) {
        records[name.rawValue] = Record(oid: oid.hex, peeled: nil)
        peelingUnknown = true
    }

    /// Removes `name`; returns whether it was there.
    @discardableResult
    mutating func remove(_ name: RefName) -> Bool { records.removeValue(forKey: name.rawValue) != nil }

    /// Set when an entry's peeled value is unknown.
    private var peelingUnknown = false

    func value(_ name: RefName) -> ObjectID? { records[name.rawValue].flatMap { try? ObjectID(hex: $0.oid) } }

    /// The file's bytes: records sorted by name in byte order, as git requires for the
    /// "sorted" trait. After `set`, the traits drop "peeled" and "fully-peeled": git then
    /// peels each tag itself, which is always correct.
    var bytes: [UInt8] {
        var traits = self.traits ?? ["peeled", "fully-peeled", "sorted"]
        if peelingUnknown { traits.removeAll { $0 == "peeled" || $0 == "fully-peeled" } }
        if !traits.contains("sorted") { traits.append("sorted") }
        var out = "# pack-refs with: " + traits.joined(separator: " ") + " \n"
        for name in records.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let record = records[name]!
            out += record.oid + " " + name + "\n"
            if let peeled = record.peeled { out += "^" + peeled + "\n" }
        }
        return Array(out.utf8)
    }
}

/// Why stored bytes failed to decode; becomes `MetadataError.corrupt` with the database
/// and key added by the caller.
struct DecodeFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Reads the big-endian fields of a stored value, checking every length, so damaged
/// bytes become a `DecodeFailure` instead of a trap.
struct ByteReader {
    private let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    /// Reads the version byte and refuses any version but `expected`.
    mutating func expectVersion(_ expected: UInt8) throws(DecodeFailure) {
        let found = try u8()
        guard found == expected else { throw DecodeFailure("unknown encoding version \(found), expected \(expected)") }
    }

    mutating func u8() throws(DecodeFailure) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() throws(DecodeFailure) -> UInt16 { UInt16(truncatingIfNeeded: try integer(2)) }

    mutating func u32() throws(DecodeFailure) -> UInt32 { UInt32(truncatingIfNeeded: try integer(4)) }

    mutating func u64() throws(DecodeFailure) -> UInt64 { try integer(8) }

    /// A storage incarnation written as u64, 0 for none.
    mutating func optionalIncarnation() throws(DecodeFailure) -> StorageIncarnation? {
        let raw = try u64()
        guard raw != 0 else { return nil }
        return try DecodeFailure.validating { () throws(IdentityError) in try StorageIncarnation(raw) }
    }

    /// The next `count` bytes (a copy, indexed from 0).
    mutating func take(_ count: Int) throws(DecodeFailure) -> [UInt8] {
        try need(count)
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// Moves past the next `count` bytes.
    mutating func skip(_ count: Int) throws(DecodeFailure) {
        try need(count)
        offset += count
    }

    private func need(_ count: Int) throws(DecodeFailure) {
        guard count >= 0, count <= remaining else {
            throw DecodeFailure("truncated: needs \(count) more bytes at offset \(offset), has \(remaining)")
        }
    }

    /// The rest of the bytes.
    mutating func takeRest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }

    /// Refuses trailing bytes: a value longer than its encoding is as damaged as a short one.
    func expectEnd() throws(DecodeFailure) {
        guard remaining == 0 else { throw DecodeFailure("\(remaining) unexpected trailing bytes") }
    }

    private mutating func integer(_ width: Int) throws(DecodeFailure) -> UInt64 {
        try need(width)
        var value: UInt64 = 0
        for i in offset..<(offset + width) { value = value << 8 | UInt64(bytes[i]) }
        offset += width
        return value
    }
}

/// Appends big-endian fields; the counterpart of `ByteReader`.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(version: UInt8) { bytes.append(version) }

    mutating func u8(_ value: UInt8) { bytes.append(value) }

    mutating func u16(_ value: UInt16) { integer(UInt64(value), width: 2) }

    mutating func u32(_ value: UInt32) { integer(UInt64(value), width: 4) }

    mutating func u64(_ value: UInt64) { integer(value, width: 8) }

    mutating func append(_ raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }

    private mutating func integer(_ value: UInt64, width: Int) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0[(8 - width)...]) }
    }
}

extension DecodeFailure {
    /// Runs an identity validation on decoded fields, reporting its failure as damage.
    static func validating<T>(_ body: () throws(IdentityError) -> T) throws(DecodeFailure) -> T {
        do {
            return try body()
        } catch {
            throw DecodeFailure(error.description)
        }
    }
}

/// A storage name on disk: one length byte, then its UTF-8 bytes (names are at most 64).
extension ByteWriter {
    mutating func storageName(_ name: StorageName) {
        let bytes = name.utf8
        u8(UInt8(bytes.count))
        append(bytes)
    }
}

extension ByteReader {
    mutating func storageName() throws(DecodeFailure) -> StorageName {
        let bytes = try take(Int(try u8()))
        return try DecodeFailure.validating { () throws(IdentityError) in try StorageName(bytes: bytes) }
    }
}

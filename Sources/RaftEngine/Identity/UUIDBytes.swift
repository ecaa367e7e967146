/// The 16 bytes of a UUID with its canonical text form (RFC 9562: lower-case hexadecimal,
/// 8-4-4-4-12). Shared storage for `ClusterID` and `NodeID`, which are distinct types so
/// that one can never be passed where the other is meant.
struct UUIDBytes: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Invariant: exactly 16 bytes.
    let bytes: [UInt8]

    static let byteCount = 16

    /// Validates 16 bytes read from the disk or the network.
    init(bytes: some Collection<UInt8>) throws(IdentityError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidUUID("\(bytes.count) bytes")
        }
        self.bytes = Array(bytes)
    }

    /// Parses the canonical text form; upper-case digits are accepted, printing is always
    /// lower-case.
    init(parsing text: String) throws(IdentityError) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 36 else { throw .invalidUUID(text) }
        var out: [UInt8] = []
        out.reserveCapacity(Self.byteCount)
        var high: UInt8? = nil
        for (offset, char) in utf8.enumerated() {
            if offset == 8 || offset == 13 || offset == 18 || offset == 23 {
                guard char == UInt8(ascii: "-") else { throw .invalidUUID(text) }
                continue
            }
            guard let nibble = Self.nibble(char) else { throw .invalidUUID(text) }
            if let h = high {
                out.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        bytes = out
    }

    /// A random (version 4, RFC 9562 variant) UUID.
    static func random(using generator: inout some RandomNumberGenerator) -> UUIDBytes {
        var out = (0..<Self.byteCount).map { _ in UInt8.random(in: 0...255, using: &generator) }
        out[6] = out[6] & 0x0F | 0x40
        out[8] = out[8] & 0x3F | 0x80
        return UUIDBytes(unchecked: out)
    }

    private init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func < (lhs: UUIDBytes, rhs: UUIDBytes) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }

    private static func nibble(_ char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): char - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): char - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): char - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

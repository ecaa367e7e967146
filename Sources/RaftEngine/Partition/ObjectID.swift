/// A Git object ID in the SHA-1 object format: 20 bytes, written as 40 hexadecimal digits.
/// The all-zero ID means "no object" in a reference update (the ref did not exist, or is
/// deleted), as in git's own update lines.
public struct ObjectID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Invariant: exactly `byteCount` bytes.
    public let bytes: [UInt8]

    public static let byteCount = 20
    public static let zero = ObjectID(uncheckedBytes: [UInt8](repeating: 0, count: byteCount))

    private init(uncheckedBytes: [UInt8]) { bytes = uncheckedBytes }

    /// Validates 20 raw bytes (from a log entry or a pack index).
    public init(bytes: some Collection<UInt8>) throws(PartitionError) {
        let raw = Array(bytes)
        guard raw.count == Self.byteCount else {
            throw .invalidObjectID("\(raw.count) bytes", reason: "a SHA-1 object ID has \(Self.byteCount) bytes")
        }
        self.bytes = raw
    }

    /// Parses 40 hexadecimal digits (either case; printed in lower case).
    public init(hex text: String) throws(PartitionError) {
        let utf8 = Array(text.utf8)
        guard utf8.count == Self.byteCount * 2 else {
            throw .invalidObjectID(
                text, reason: "expected \(Self.byteCount * 2) hexadecimal digits, got \(utf8.count) bytes")
        }
        var raw = [UInt8](repeating: 0, count: Self.byteCount)
        for i in 0..<Self.byteCount {
            guard let high = Self.nibble(utf8[2 * i]), let low = Self.nibble(utf8[2 * i + 1]) else {
                throw .invalidObjectID(text, reason: "not a hexadecimal digit at position \(2 * i)")
            }
            raw[i] = high << 4 | low
        }
        bytes = raw
    }

    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(Self.byteCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    public static func < (a: ObjectID, b: ObjectID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

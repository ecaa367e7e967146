/// The cluster-wide identity of a partition: its authority storage (the storage that
/// created it) and the partition ID that storage minted. Opaque to every other storage.
///
/// Text form: `<authority>:<partitionID>`, e.g. `default:42`.
///
/// Byte form (keys in the metadata store and on the wire):
///
/// ```
/// +----------------------+------+----------------------------+
/// | authority (1-64 B)   | 0x00 | partition ID, u64 big-end. |
/// +----------------------+------+----------------------------+
/// ```
///
/// NUL never occurs in a storage name, so the separator is unambiguous and the form is
/// prefix-free; it sorts by authority name, then numerically by partition ID.
public struct PartitionKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let authority: StorageName
    public let partitionID: PartitionID

    /// The separator byte in the byte form.
    static let separator: UInt8 = 0

    public init(authority: StorageName, partitionID: PartitionID) {
        self.authority = authority
        self.partitionID = partitionID
    }

    /// Parses the text form `authority:partitionID` (decimal ID, no sign, no leading zero).
    public init(parsing text: String) throws(IdentityError) {
        let utf8 = Array(text.utf8)
        guard let colon = utf8.lastIndex(of: UInt8(ascii: ":")) else {
            throw .invalidPartitionKey(text, reason: "expected <storage>:<partition ID>")
        }
        let digits = utf8[(colon + 1)...]
        guard !digits.isEmpty, digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            digits.count == 1 || digits.first != UInt8(ascii: "0"),
            let raw = UInt64(String(decoding: digits, as: UTF8.self))
        else {
            throw .invalidPartitionKey(text, reason: "the partition ID must be a decimal number")
        }
        do {
            authority = try StorageName(bytes: utf8[..<colon])
            partitionID = try PartitionID(raw)
        } catch {
            throw .invalidPartitionKey(text, reason: error.description)
        }
    }

    /// Decodes and validates the byte form.
    public init(decoding bytes: some Collection<UInt8>) throws(IdentityError) {
        let raw = Array(bytes)
        let shown = "\(raw.count) bytes"
        guard raw.count >= 10, raw[raw.count - 9] == Self.separator else {
            throw .invalidPartitionKey(shown, reason: "expected <authority> NUL <8-byte partition ID>")
        }
        var id: UInt64 = 0
        for byte in raw[(raw.count - 8)...] { id = id << 8 | UInt64(byte) }
        do {
            authority = try StorageName(bytes: raw[..<(raw.count - 9)])
            partitionID = try PartitionID(id)
        } catch {
            throw .invalidPartitionKey(shown, reason: error.description)
        }
    }

    /// The byte form (see the type's documentation).
    public var encoded: [UInt8] {
        var out = authority.utf8
        out.reserveCapacity(out.count + 9)
        out.append(Self.separator)
        withUnsafeBytes(of: partitionID.rawValue.bigEndian) { out.append(contentsOf: $0) }
        return out
    }

    public var description: String { "\(authority):\(partitionID)" }

    /// Byte-form order: authority, then partition ID.
    public static func < (lhs: PartitionKey, rhs: PartitionKey) -> Bool {
        lhs.encoded.lexicographicallyPrecedes(rhs.encoded)
    }
}

/// The name of a storage (`default`, `storage-a`), unique in the cluster.
///
/// Rules, checked once at the gateway: 1 to 64 characters from `[a-z0-9._-]`, starting with
/// a letter or digit, and never containing `..`. The name appears in directory names
/// (`<authority>_<partitionID>`), in partition keys (where `:` and NUL separate it from the
/// ID) and in log lines, so it is kept to characters that are safe in all three.
public struct StorageName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Invariant: valid by the rules above.
    public let rawValue: String

    /// The longest name, in characters (which are all ASCII, so also in bytes).
    public static let maximumLength = 64

    public init(_ text: String) throws(IdentityError) {
        try self.init(utf8: Array(text.utf8), text: text)
    }

    /// Validates the UTF-8 bytes of a name read from the disk or the network.
    public init(bytes: some Collection<UInt8>) throws(IdentityError) {
        let utf8 = Array(bytes)
        try self.init(utf8: utf8, text: String(decoding: utf8, as: UTF8.self))
    }

    private init(utf8: [UInt8], text: String) throws(IdentityError) {
        guard !utf8.isEmpty else { throw .invalidStorageName(text, reason: "the name is empty") }
        guard utf8.count <= Self.maximumLength else {
            throw .invalidStorageName(text, reason: "longer than \(Self.maximumLength) characters")
        }
        guard Self.isLeading(utf8[0]) else {
            throw .invalidStorageName(text, reason: "must start with a lower-case letter or a digit")
        }
        for byte in utf8 where !Self.isLeading(byte) && !Self.isPunctuation(byte) {
            throw .invalidStorageName(text, reason: "only a-z, 0-9, '.', '_' and '-' are allowed")
        }
        guard !text.contains("..") else { throw .invalidStorageName(text, reason: "must not contain '..'") }
        rawValue = text
    }

    /// The UTF-8 bytes (all ASCII).
    public var utf8: [UInt8] { Array(rawValue.utf8) }

    public var description: String { rawValue }

    public static func < (lhs: StorageName, rhs: StorageName) -> Bool { lhs.rawValue < rhs.rawValue }

    private static func isLeading(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    private static func isPunctuation(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
}

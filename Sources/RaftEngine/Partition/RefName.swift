/// A full reference name under `refs/` (`refs/heads/main`, `refs/tags/v1.0`), valid by
/// the rules of `git check-ref-format`, checked once at the gateway:
///
/// - at most `maximumLength` bytes, valid UTF-8, starting with `refs/`;
/// - components separated by single `/`: none empty, none starting with `.`, none ending
///   with `.lock`; the name does not end with `/` or `.`;
/// - no `..`, no `@{`, not the single character `@`;
/// - no ASCII control character, space, DEL, `~`, `^`, `:`, `?`, `*`, `[` or `\`.
///
/// The tests hold these rules against Debian's `git check-ref-format` on generated names.
public struct RefName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Invariant: valid by the rules above.
    public let rawValue: String

    /// Longer names are refused (git has no limit of its own; file systems do).
    public static let maximumLength = 1024

    public init(_ text: String) throws(PartitionError) {
        try Self.validate(Array(text.utf8), text: text)
        rawValue = text
    }

    /// Validates the UTF-8 bytes of a name read from a log entry or a client.
    public init(bytes: some Collection<UInt8>) throws(PartitionError) {
        let utf8 = Array(bytes)
        guard let text = String(validating: utf8, as: UTF8.self) else {
            throw .invalidRefName(String(decoding: utf8, as: UTF8.self), reason: "not valid UTF-8")
        }
        try Self.validate(utf8, text: text)
        rawValue = text
    }

    public var description: String { rawValue }

    public var utf8: [UInt8] { Array(rawValue.utf8) }

    public static func < (a: RefName, b: RefName) -> Bool { a.rawValue < b.rawValue }

    private static func validate(_ utf8: [UInt8], text: String) throws(PartitionError) {
        func refuse(_ reason: String) -> PartitionError { .invalidRefName(text, reason: reason) }
        guard !utf8.isEmpty else { throw refuse("empty") }
        guard utf8.count <= maximumLength else { throw refuse("longer than \(maximumLength) bytes") }
        guard utf8.starts(with: Array("refs/".utf8)) else { throw refuse("not under refs/") }
        guard utf8.last != UInt8(ascii: "/") else { throw refuse("ends with /") }
        guard utf8.last != UInt8(ascii: ".") else { throw refuse("ends with .") }
        var previous: UInt8 = 0
        for c in utf8 {
            switch c {
            case 0..<0x20, 0x7F: throw refuse("contains a control character")
            case UInt8(ascii: " "), UInt8(ascii: "~"), UInt8(ascii: "^"), UInt8(ascii: ":"), UInt8(ascii: "?"),
                UInt8(ascii: "*"), UInt8(ascii: "["), UInt8(ascii: "\\"):
                throw refuse("contains \(Character(Unicode.Scalar(c)).debugDescription)")
            case UInt8(ascii: "."):
                if previous == UInt8(ascii: ".") { throw refuse("contains ..") }
            case UInt8(ascii: "{"):
                if previous == UInt8(ascii: "@") { throw refuse("contains @{") }
            default:
                break
            }
            previous = c
        }
        for component in utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard !component.isEmpty else { throw refuse("contains an empty component (//)") }
            if component.first == UInt8(ascii: ".") { throw refuse("a component starts with .") }
            if component.count >= 5 && component.suffix(5).elementsEqual(".lock".utf8) {
                throw refuse("a component ends with .lock")
            }
        }
    }
}

/// An identity value that failed validation at the gateway: text from a client, an
/// operator or a configuration file, or bytes from the disk or the network.
///
/// Each case names the offending input and the rule it broke, so the message alone tells
/// the operator what to fix.
public enum IdentityError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a UUID in canonical text form, or not 16 bytes.
    case invalidUUID(String)
    /// A storage name outside `[a-z0-9][a-z0-9._-]*`, 1 to 64 characters, without `..`.
    case invalidStorageName(String, reason: String)
    /// Incarnation 0, which no storage ever has.
    case invalidIncarnation
    /// Partition ID 0.
    case invalidPartitionID(UInt64)
    /// A partition key that does not decode or parse.
    case invalidPartitionKey(String, reason: String)
    /// A repository relative path that breaks a path rule.
    case invalidRelativePath(String, reason: String)
    /// A relative path that resolves, through a symbolic link, outside its storage root.
    case pathEscapesRoot(path: String, resolved: String, root: String)
    /// The file system could not resolve a path while checking it.
    case pathResolutionFailed(path: String, IOError)

    public var description: String {
        switch self {
        case .invalidUUID(let text):
            "invalid UUID \(Self.quoted(text)): expected 32 hexadecimal digits as 8-4-4-4-12"
        case .invalidStorageName(let name, let reason):
            "invalid storage name \(Self.quoted(name)): \(reason)"
        case .invalidIncarnation:
            "invalid storage incarnation 0: incarnations start at 1"
        case .invalidPartitionID(let raw):
            "invalid partition ID \(raw): 0 is never a partition"
        case .invalidPartitionKey(let text, let reason):
            "invalid partition key \(Self.quoted(text)): \(reason)"
        case .invalidRelativePath(let path, let reason):
            "invalid repository relative path \(Self.quoted(path)): \(reason)"
        case .pathEscapesRoot(let path, let resolved, let root):
            "repository relative path \(Self.quoted(path)) resolves to \(resolved), outside the storage root \(root) (a symbolic link points out of the storage)"
        case .pathResolutionFailed(let path, let error):
            "cannot check repository path \(Self.quoted(path)): \(error)"
        }
    }

    /// Quotes untrusted text for a message, escaping control characters so that a NUL or a
    /// newline cannot hide or forge part of a log line.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars.prefix(200) {
            out += scalar.value < 0x20 || scalar == "\"" ? scalar.escaped(asASCII: true) : String(scalar)
        }
        if text.unicodeScalars.count > 200 { out += "..." }
        return out + "\""
    }
}

/// Why a partition operation or its log entry was refused. Every case names what was wrong;
/// nothing was changed.
public enum PartitionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A reference name outside `git check-ref-format`'s rules (or not under `refs/`).
    case invalidRefName(String, reason: String)
    /// An object ID that is not 40 lower- or upper-case hexadecimal digits (SHA-1).
    case invalidObjectID(String, reason: String)
    /// A relative path, key or other field of an operation that is out of bounds.
    case invalidOperation(String)
    /// A log entry whose bytes do not decode: damage, or a writer of another format. The
    /// replica that finds it stops; it never applies half an entry.
    case corruptEntry(String)

    public var description: String {
        switch self {
        case .invalidRefName(let name, let reason): "invalid reference name \(quoted(name)): \(reason)"
        case .invalidObjectID(let text, let reason): "invalid object ID \(quoted(text)): \(reason)"
        case .invalidOperation(let reason): "invalid partition operation: \(reason)"
        case .corruptEntry(let reason): "damaged partition log entry: \(reason)"
        }
    }
}

/// A name for messages: printable ASCII as is, anything else escaped.
private func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars.prefix(200) {
        if scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\" {
            out.unicodeScalars.append(scalar)
        } else {
            out += "\\u{\(String(scalar.value, radix: 16))}"
        }
    }
    return out + (text.unicodeScalars.count > 200 ? "…\"" : "\"")
}

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
    /// A reference's value is not the one the update expected (Gitaly's
    /// `ReferenceStateMismatchError`). A zero OID means "does not exist".
    case referenceStateMismatch(repository: String, reference: String, expected: ObjectID, actual: ObjectID)
    /// Creating a repository (or pool) that exists, counting transactions not yet applied.
    case repositoryExists(String)
    /// An operation on a repository that does not exist, counting transactions not yet applied.
    case repositoryNotFound(String)
    /// A reference would point at an object that neither the repository nor the
    /// transaction's pack holds, or whose history is incomplete.
    case objectMissing(repository: String, object: String)
    /// A pack that `git index-pack --strict` refuses, or that is too large.
    case invalidPack(String)
    /// An object pool rule: members of a pool share its partition; no chains; no self-link.
    case objectPoolRule(String)
    /// Reading a repository's state failed (I/O error, or files git would call damaged).
    case storage(String)
    /// The repository belongs to another partition (or, to adopt, is not a repository).
    case wrongPartition(repository: String, reason: String)
    /// An attachment could not be stored, read, moved to another replica or found.
    case attachment(String)

    public var description: String {
        switch self {
        case .invalidRefName(let name, let reason): "invalid reference name \(quoted(name)): \(reason)"
        case .invalidObjectID(let text, let reason): "invalid object ID \(quoted(text)): \(reason)"
        case .invalidOperation(let reason): "invalid partition operation: \(reason)"
        case .corruptEntry(let reason): "damaged partition log entry: \(reason)"
        case .referenceStateMismatch(let repository, let reference, let expected, let actual):
            "reference state mismatch in \(quoted(repository)): \(quoted(reference)) expected \(Self.state(expected)), is \(Self.state(actual))"
        case .repositoryExists(let path): "repository \(quoted(path)) already exists"
        case .repositoryNotFound(let path): "repository \(quoted(path)) does not exist"
        case .objectMissing(let repository, let object):
            "object \(object) is missing from \(quoted(repository)) and the pushed pack"
        case .invalidPack(let reason): "invalid pack: \(reason)"
        case .objectPoolRule(let reason): "object pool rule: \(reason)"
        case .storage(let reason): "reading repository state: \(reason)"
        case .wrongPartition(let repository, let reason): "repository \(quoted(repository)): \(reason)"
        case .attachment(let reason): "attachment: \(reason)"
        }
    }
}

extension PartitionError {
    fileprivate static func state(_ oid: ObjectID) -> String { oid == .zero ? "absent" : oid.hex }
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

/// A repository's path relative to its storage root (`@hashed/ab/cd/<sha256>.git`,
/// `group/project.git`), globally unique in the cluster.
///
/// Rules, checked once at the gateway, so that joining the path to a storage root can only
/// name something inside the root:
/// - not empty, at most 4096 bytes, no NUL;
/// - not absolute (no leading `/`);
/// - no empty component (`a//b`, a trailing `/`), no `.` and no `..` component;
/// - the first component is not `+raft`, the engine's own directory in every storage.
///
/// These rules cannot see symbolic links on disk; `resolved(under:)` checks those.
public struct RelativePath: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Invariant: valid by the rules above.
    public let rawValue: String

    /// The longest path, in bytes (PATH_MAX on Linux).
    public static let maximumLength = 4096

    /// The directory of the engine in every storage root; no repository may live under it.
    public static let reservedTopLevel = "+raft"

    public init(_ text: String) throws(IdentityError) {
        try Self.validate(Array(text.utf8), text: text)
        rawValue = text
    }

    /// Validates the UTF-8 bytes of a path read from the disk or the network.
    public init(bytes: some Collection<UInt8>) throws(IdentityError) {
        let utf8 = Array(bytes)
        guard let text = String(validating: utf8, as: UTF8.self) else {
            throw .invalidRelativePath(String(decoding: utf8, as: UTF8.self), reason: "not valid UTF-8")
        }
        try Self.validate(utf8, text: text)
        rawValue = text
    }

    /// The UTF-8 bytes.
    public var utf8: [UInt8] { Array(rawValue.utf8) }

    /// The path components, in order.
    public var components: [Substring] { rawValue.split(separator: "/", omittingEmptySubsequences: false) }

    public var description: String { rawValue }

    public static func < (lhs: RelativePath, rhs: RelativePath) -> Bool {
        lhs.rawValue.utf8.lexicographicallyPrecedes(rhs.rawValue.utf8)
    }

    /// The absolute path of this repository under `root` (an existing directory), after
    /// checking that no symbolic link among the existing leading components leads outside
    /// the root. Components that do not exist yet cannot be links, so they are fine.
    ///
    /// Why the check is needed beyond the textual rules: a link `group -> /etc` inside the
    /// storage would let `group/passwd` name a file outside it.
    public func resolved(under root: String) throws(IdentityError) -> String {
        let joined = Self.join(root, rawValue)
        let canonicalRoot: String
        do {
            canonicalRoot = try FileSystem.canonicalPath(root)
        } catch {
            throw .pathResolutionFailed(path: rawValue, error)
        }
        // Find the longest prefix that exists; a dangling link stops the walk as an error
        // because where it would lead cannot be checked.
        var existing = root
        for component in components {
            let candidate = Self.join(existing, String(component))
            let kind: FileSystem.FileKind?
            do {
                kind = try FileSystem.kind(of: candidate, followSymlinks: false)
                if kind == .symbolicLink, try FileSystem.kind(of: candidate, followSymlinks: true) == nil {
                    throw IdentityError.pathEscapesRoot(
                        path: rawValue, resolved: "\(candidate) (a dangling symbolic link)", root: canonicalRoot)
                }
            } catch let error as IdentityError {
                throw error
            } catch let error as IOError {
                throw .pathResolutionFailed(path: rawValue, error)
            } catch {
                preconditionFailure("unexpected error \(error)")
            }
            guard kind != nil else { break }
            existing = candidate
        }
        let canonical: String
        do {
            canonical = try FileSystem.canonicalPath(existing)
        } catch {
            throw .pathResolutionFailed(path: rawValue, error)
        }
        guard Self.isInside(canonical, root: canonicalRoot) else {
            throw .pathEscapesRoot(path: rawValue, resolved: canonical, root: canonicalRoot)
        }
        return joined
    }

    /// Whether the canonical path `path` is `root` itself or below it.
    static func isInside(_ path: String, root: String) -> Bool {
        if path == root || root == "/" { return true }
        return path.hasPrefix(root + "/")
    }

    static func join(_ base: String, _ component: String) -> String {
        base.hasSuffix("/") ? base + component : base + "/" + component
    }

    private static func validate(_ utf8: [UInt8], text: String) throws(IdentityError) {
        guard !utf8.isEmpty else { throw .invalidRelativePath(text, reason: "the path is empty") }
        guard utf8.count <= maximumLength else {
            throw .invalidRelativePath(text, reason: "longer than \(maximumLength) bytes")
        }
        guard !utf8.contains(0) else { throw .invalidRelativePath(text, reason: "contains a NUL byte") }
        guard utf8[0] != UInt8(ascii: "/") else {
            throw .invalidRelativePath(text, reason: "must be relative to the storage, not absolute")
        }
        let parts = utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for part in parts {
            if part.isEmpty {
                throw .invalidRelativePath(text, reason: "has an empty component ('//' or a trailing '/')")
            }
            if part.elementsEqual(".".utf8) { throw .invalidRelativePath(text, reason: "has a '.' component") }
            if part.elementsEqual("..".utf8) { throw .invalidRelativePath(text, reason: "has a '..' component") }
        }
        if parts[0].elementsEqual(reservedTopLevel.utf8) {
            throw .invalidRelativePath(text, reason: "'\(reservedTopLevel)' is the engine's own directory")
        }
    }
}

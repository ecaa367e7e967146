#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A failed I/O operation, with the operation, the path and the errno that the kernel gave.
///
/// Created only at the I/O boundary (the wrappers in `IO/`). Errnos that can only mean a bug
/// in raftd (`EBADF`, `EFAULT`) never become an `IOError`: they stop the process.
public struct IOError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What went wrong, in the terms an operator acts on.
    public enum Kind: String, Sendable {
        case noSpace = "no space left on device"
        case fileTooLarge = "file too large"
        case permissionDenied = "permission denied"
        case notFound = "not found"
        case alreadyExists = "already exists"
        case notADirectory = "not a directory"
        case ioFailure = "I/O error"
        case writeIncomplete = "write made no progress"
        case unsupported = "not supported"
        case busy = "resource busy"
        case outOfMemory = "out of memory"
        case stopped = "writer stopped after an earlier fdatasync failure"
        case other = "error"
    }

    public let kind: Kind
    /// The operation that failed, e.g. `fdatasync` or `io_uring write`.
    public let operation: String
    /// The file or directory involved, when there is one.
    public let path: String?
    /// The errno the kernel returned (positive), or 0 when the failure did not come with one.
    public let code: Int32

    public init(_ operation: String, path: String?, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
        self.kind = Kind(errno: code)
    }

    public init(_ operation: String, path: String?, kind: Kind) {
        self.operation = operation
        self.path = path
        self.code = 0
        self.kind = kind
    }

    public var description: String {
        var text = operation
        if let path { text += " \(path)" }
        text += ": \(kind.rawValue)"
        if code != 0 { text += " (\(IOError.errnoName(code)), \(String(cString: strerror(code))))" }
        return text
    }

    /// The symbolic name of the errnos raftd reports, for logs an operator can search.
    static func errnoName(_ code: Int32) -> String {
        switch code {
        case ENOSPC: "ENOSPC"
        case EFBIG: "EFBIG"
        case EIO: "EIO"
        case EACCES: "EACCES"
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case EEXIST: "EEXIST"
        case ENOTDIR: "ENOTDIR"
        case EISDIR: "EISDIR"
        case EINVAL: "EINVAL"
        case ENOSYS: "ENOSYS"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case EBUSY: "EBUSY"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EDQUOT: "EDQUOT"
        case EROFS: "EROFS"
        case ECANCELED: "ECANCELED"
        default: "errno \(code)"
        }
    }
}

extension IOError.Kind {
    init(errno code: Int32) {
        switch code {
        case ENOSPC, EDQUOT: self = .noSpace
        case EFBIG: self = .fileTooLarge
        case EACCES, EPERM, EROFS: self = .permissionDenied
        case ENOENT: self = .notFound
        case EEXIST: self = .alreadyExists
        case ENOTDIR: self = .notADirectory
        case EIO: self = .ioFailure
        case ENOSYS, EOPNOTSUPP: self = .unsupported
        case EBUSY, EAGAIN: self = .busy
        case ENOMEM: self = .outOfMemory
        default: self = .other
        }
    }
}

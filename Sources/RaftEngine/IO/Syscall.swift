#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The one place that turns a CRaftIO return value (`>= 0` or `-errno`) into a Swift result.
///
/// - `EINTR` is retried: no caller wants to see it.
/// - `EBADF` and `EFAULT` mean raftd passed a closed descriptor or a bad pointer: a bug, so
///   the process stops with the operation named rather than carrying on with unknown state.
/// - Every other errno becomes an `IOError` naming the operation and the path.
enum Syscall {
    @inline(__always)
    static func call<Result: SignedInteger & FixedWidthInteger>(
        _ operation: String,
        path: String?,
        _ body: () -> Result
    ) throws(IOError) -> Result {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = Int32(truncatingIfNeeded: 0 - result)
            if code == EINTR { continue }
            try failure(operation, path: path, code: code)
        }
    }

    /// Classifies a negative errno returned without a retry loop (for example an io_uring
    /// completion): traps on the errnos that mean a bug, throws the rest.
    static func failure(_ operation: String, path: String?, code: Int32) throws(IOError) -> Never {
        precondition(
            code != EBADF && code != EFAULT,
            "\(operation) \(path ?? ""): \(IOError.errnoName(code)) means a raftd bug (bad descriptor or address)"
        )
        throw IOError(operation, path: path, code: code)
    }
}

import CRaftIO
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How batched WAL writes reach the disk.
public enum IOBackendKind: String, CaseIterable, Sendable, CustomStringConvertible {
    /// One io_uring submission per batch: writes linked to one fdatasync.
    case ioUring = "io_uring"
    /// pwritev(2) per write, then fdatasync(2): for kernels or sandboxes without io_uring.
    case fallback = "pwritev"

    public var description: String { rawValue }

    var craftBackend: craft_backend {
        switch self {
        case .ioUring: CRAFT_BACKEND_URING
        case .fallback: CRAFT_BACKEND_FALLBACK
        }
    }
}

/// The backend this process uses, chosen once at first use and logged once.
///
/// `RAFTD_IO_BACKEND` overrides the choice: `auto` (the default: io_uring when the probe
/// passes), `io_uring` (fail if unavailable) or `pwritev` (always the fallback; the tests
/// use it to run the whole suite on both backends).
public struct IOBackendChoice: Sendable, CustomStringConvertible {
    public let kind: IOBackendKind
    /// Why this backend: the probe result or the override.
    public let reason: String

    public var description: String { "\(kind) (\(reason))" }

    /// The value of `RAFTD_IO_BACKEND`, or "auto".
    public static var requestedByEnvironment: String {
        getenv("RAFTD_IO_BACKEND").map { String(cString: $0) } ?? "auto"
    }

    /// The process-wide choice. Computed once (Swift initialises a static `let` exactly once).
    public static let current: IOBackendChoice = {
        let requested = requestedByEnvironment
        let choice: IOBackendChoice
        do {
            choice = try resolve(requested: requested)
        } catch {
            // An operator asked for something impossible: refuse to start rather than
            // silently run with something else. Commands call `resolve` first to print a
            // clean error; this is the last line of defence.
            fatalError("RAFTD_IO_BACKEND=\(requested): \(error)")
        }
        Logger(label: "raftd.io").info(
            "I/O backend selected",
            metadata: ["backend": "\(choice.kind)", "reason": "\(choice.reason)"]
        )
        return choice
    }()

    /// Resolves a requested backend name against what this machine supports.
    public static func resolve(requested: String) throws(IOError) -> IOBackendChoice {
        switch requested {
        case "", "auto":
            if let failure = probeIOUring() {
                return IOBackendChoice(kind: .fallback, reason: "io_uring unavailable: \(failure)")
            }
            return IOBackendChoice(kind: .ioUring, reason: "io_uring probe passed")
        case IOBackendKind.ioUring.rawValue:
            if let failure = probeIOUring() { throw failure }
            return IOBackendChoice(kind: .ioUring, reason: "requested by RAFTD_IO_BACKEND")
        case IOBackendKind.fallback.rawValue:
            return IOBackendChoice(kind: .fallback, reason: "requested by RAFTD_IO_BACKEND")
        default:
            throw IOError(
                "choose I/O backend '\(requested)' (expected auto, io_uring or pwritev)", path: nil, code: EINVAL)
        }
    }

    /// nil when io_uring can be used: the syscall exists and is allowed (not ENOSYS, EPERM,
    /// `kernel.io_uring_disabled`, seccomp), a ring can be set up, and WRITEV and FSYNC exist.
    public static func probeIOUring() -> IOError? {
        let rc = craft_uring_probe()
        return rc == 0 ? nil : IOError("io_uring probe", path: nil, code: -rc)
    }
}

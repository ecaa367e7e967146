#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The one place the engine reads time: monotonic nanoseconds, never the wall clock (which
/// steps). Leases, request deadlines, node liveness, the tick thread, the WAL writer's
/// batch delay, recovery timing and timed lock waits all read it; the host simulation
/// injects its own.
public struct MonotonicClock: Sendable {
    private let read: @Sendable () -> Int

    public init(_ read: @escaping @Sendable () -> Int) { self.read = read }

    /// Nanoseconds since an arbitrary fixed point (boot), never decreasing.
    public var nanoseconds: Int { read() }

    /// CLOCK_MONOTONIC.
    public static let system = MonotonicClock { MonotonicClock.readSystem() }

    static func readSystem() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1_000_000_000 + Int(ts.tv_nsec)
    }

    /// The system clock's reading `nanoseconds` from now, as a timespec (timed waits).
    static func systemDeadline(after nanoseconds: Int) -> timespec {
        let at = readSystem() + max(0, nanoseconds)
        return timespec(tv_sec: at / 1_000_000_000, tv_nsec: at % 1_000_000_000)
    }
}

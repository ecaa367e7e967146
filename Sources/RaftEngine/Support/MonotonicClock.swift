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

    /// CLOCK_BOOTTIME: monotonic, and it counts time the machine spent suspended (a leader
    /// resumed from a suspend must see its lease as long gone, as its peers do).
    public static let system = MonotonicClock { MonotonicClock.read(CLOCK_BOOTTIME) }

    static func read(_ id: clockid_t) -> Int {
        var ts = timespec()
        clock_gettime(id, &ts)
        return Int(ts.tv_sec) * 1_000_000_000 + Int(ts.tv_nsec)
    }

    /// CLOCK_MONOTONIC's reading `nanoseconds` from now, as a timespec: the deadline of a
    /// timed wait on a condition variable (which cannot wait on CLOCK_BOOTTIME; a wait is a
    /// duration, and a suspend in the middle only ends it late).
    static func conditionDeadline(after nanoseconds: Int) -> timespec {
        let at = read(CLOCK_MONOTONIC) + max(0, nanoseconds)
        return timespec(tv_sec: at / 1_000_000_000, tv_nsec: at % 1_000_000_000)
    }
}

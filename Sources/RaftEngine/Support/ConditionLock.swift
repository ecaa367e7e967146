import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A pthread mutex with a condition variable: the WAL's queue and index are shared between
/// its writer thread and callers on any thread, and callers may block (no async context).
final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        precondition(pthread_mutex_init(mutex, nil) == 0)
        // Timed waits measure on the monotonic clock: a wall clock step must not stretch or
        // cut them.
        var attributes = pthread_condattr_t()
        precondition(pthread_condattr_init(&attributes) == 0)
        precondition(pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC) == 0)
        precondition(pthread_cond_init(condition, &attributes) == 0)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a signal; the caller holds the lock (inside `withLock`) and re-checks its
    /// condition in a loop.
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits at most `nanoseconds`; returns false on timeout.
    func wait(nanoseconds: Int) -> Bool {
        var deadline = MonotonicClock.conditionDeadline(after: nanoseconds)
        return pthread_cond_timedwait(condition, mutex, &deadline) == 0
    }

    func broadcast() { pthread_cond_broadcast(condition) }
}

import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A pthread readers-writer lock. LMDB transactions hold it shared; growing the map holds
/// it exclusively, because `mdb_env_set_mapsize` requires that no transaction is active.
final class ReadWriteLock: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    /// - Parameter preferWriters: a waiting exclusive holder blocks new shared holders
    ///   (glibc prefers readers by default, which can starve a writer for ever). Shared
    ///   holds must then never nest.
    init(preferWriters: Bool = false) {
        lock = .allocate(capacity: 1)
        precondition(craft_rwlock_init(lock, preferWriters ? 1 : 0) == 0, "pthread_rwlock_init failed")
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func withShared<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        precondition(pthread_rwlock_rdlock(lock) == 0)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func withExclusive<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        precondition(pthread_rwlock_wrlock(lock) == 0)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

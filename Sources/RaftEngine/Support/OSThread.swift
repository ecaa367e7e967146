import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A dedicated OS thread running one closure: the WAL writer of a storage. There is one per
/// storage, never one per group.
final class OSThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let threadName = String(name.prefix(15))
        self.body = {
            _ = craft_set_thread_name(threadName)
            body()
        }
        let unmanaged = Unmanaged.passRetained(self)
        let rc = pthread_create(
            &thread, nil,
            { context in
                let me = Unmanaged<OSThread>.fromOpaque(context!).takeRetainedValue()
                me.body()
                return nil
            }, unmanaged.toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    func join() { pthread_join(thread, nil) }

    /// Lets the thread end on its own (nobody joins it).
    func detach() { pthread_detach(thread) }
}

/// Runs blocking work (a child process, a large file) on its own OS thread and waits for it
/// without holding a thread of Swift's cooperative pool (one per core).
func offThePool<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        OSThread(name: name) { continuation.resume(returning: body()) }.detach()
    }
}

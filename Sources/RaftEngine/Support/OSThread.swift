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

/// A dedicated thread for blocking background work (bulk transfers: file reads, writes,
/// hashing, fsyncs), so none of it occupies a thread of Swift's cooperative pool, where it
/// would hold up every task queued behind it. Runs at a lower priority (`niceness`): it
/// yields the CPU to the threads that carry heartbeats and small writes.
final class BackgroundThread: Sendable {
    private let queue = WorkQueue<@Sendable () -> Void>()

    init(name: String, niceness: Int32 = 10) {
        queue.start(name: name) { jobs in
            for job in jobs { job() }
        }
        let lower: @Sendable () -> Void = { _ = craft_set_thread_niceness(niceness) }
        queue.post(CollectionOfOne(lower))
    }

    /// Runs `body` on the thread and returns its result (once stopped: on the caller's).
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let job: @Sendable () -> Void = { continuation.resume(returning: body()) }
            if !queue.offer(job) { job() }
        }
    }

    /// Queues `body` without waiting (once stopped: runs it on the caller's thread).
    func post(_ body: @escaping @Sendable () -> Void) {
        if !queue.offer(body) { body() }
    }

    /// Finishes what is queued, then ends the thread.
    func stop() { queue.stop() }
}

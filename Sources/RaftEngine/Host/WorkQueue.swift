/// A queue drained by one dedicated thread: producers on any thread add items; the thread
/// takes everything queued at once and hands the batch to `body`, then sleeps until more
/// arrives. `stop()` lets the thread finish what is queued, then joins it.
final class WorkQueue<Item>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var items: [Item] = []
    private var stopping = false
    private var thread: OSThread?
    /// Bound for `offer`; `post` ignores it.
    let capacity: Int

    init(capacity: Int = .max) { self.capacity = capacity }

    /// Queues an external item; false when the queue is full or stopping.
    func offer(_ item: Item) -> Bool {
        lock.withLock {
            guard !stopping, items.count < capacity else { return false }
            items.append(item)
            if items.count == 1 { lock.broadcast() }
            return true
        }
    }

    /// Queues items that must not be refused (completions of work already accepted).
    func post(_ batch: some Collection<Item>) {
        lock.withLock {
            let wasEmpty = items.isEmpty
            items.append(contentsOf: batch)
            if wasEmpty && !items.isEmpty { lock.broadcast() }
        }
    }

    func start(name: String, _ body: @escaping @Sendable ([Item]) -> Void) {
        thread = OSThread(name: name) { [self] in
            while true {
                var batch: [Item] = []
                let stop: Bool = lock.withLock {
                    while items.isEmpty && !stopping { lock.wait() }
                    swap(&batch, &items)
                    return stopping && batch.isEmpty
                }
                if stop { return }
                body(batch)
            }
        }
    }

    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        thread?.join()
        thread = nil
    }
}

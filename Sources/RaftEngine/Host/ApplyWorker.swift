import RaftConsensus

/// A thread applying committed entries to state machines. A replica always goes to the
/// same apply worker, so its jobs run in order.
final class ApplyWorker: @unchecked Sendable {
    private let queue = WorkQueue<ApplyJob>()
    let index: Int

    init(index: Int) { self.index = index }

    func enqueue(_ batch: [ApplyJob]) { queue.post(batch) }

    func start(host: NodeHost) {
        queue.start(name: "raftd-apply-\(index)") { batch in host.run(batch) }
    }

    /// Stops after the queued jobs ran.
    func stop() { queue.stop() }
}

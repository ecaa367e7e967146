import RaftConsensus

/// One worker thread and the shard it owns. Inputs arrive in a bounded inbox; the thread
/// drains everything queued, feeds it to the shard, runs one turn and hands the output to
/// the host to carry out, then sleeps until more arrives.
final class HostWorker: @unchecked Sendable {
    enum Event {
        case messages([PeerMessage])
        case request(HostRequest)
        case tick
        case durable(token: UInt64, slot: Int, Result<Void, WALError>)
        case applied(Replica, LogIndex, ConfState?, entries: Int, failure: String?)
        case nodeDown(Int)
        case nodeUp(Int)
        case add([(Replica, Bool)])
        case call(@Sendable (HostShard) -> Void)
    }

    let shard: HostShard
    private let lock = ConditionLock()
    private var events: [Event] = []
    private var stopping = false
    private let maxEvents: Int
    private var thread: OSThread?

    init(shard: HostShard, maxEvents: Int) {
        self.shard = shard
        self.maxEvents = maxEvents
    }

    /// Queues an external input; false when the inbox is full (the caller refuses or drops).
    func offer(_ event: Event) -> Bool {
        lock.withLock {
            guard !stopping, events.count < maxEvents else { return false }
            events.append(event)
            if events.count == 1 { lock.broadcast() }
            return true
        }
    }

    /// Queues an internal event (completions, ticks): never refused, or the pipeline would
    /// lose track of its own work. Its volume is bounded by the work that produced it.
    func post(_ event: Event) {
        lock.withLock {
            events.append(event)
            if events.count == 1 { lock.broadcast() }
        }
    }

    func start(host: NodeHost) {
        thread = OSThread(name: "raftd-host-\(shard.index)") { [self] in run(host) }
    }

    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        thread?.join()
        thread = nil
    }

    private func run(_ host: NodeHost) {
        while true {
            var batch: [Event] = []
            let stop: Bool = lock.withLock {
                while events.isEmpty && !stopping { lock.wait() }
                swap(&batch, &events)
                return stopping && batch.isEmpty
            }
            if stop { return }
            // Ticks queued while the worker was busy collapse into one: a burst of ticks with
            // no turn between them could fire CheckQuorum with no chance to hear answers.
            let lastTick = batch.lastIndex { if case .tick = $0 { return true } else { return false } }
            for (i, event) in batch.enumerated() {
                if case .tick = event, i != lastTick { continue }
                handle(event)
            }
            let output = shard.runTurn()
            host.carryOut(output, from: self)
        }
    }

    private func handle(_ event: Event) {
        switch event {
        case .messages(let messages): shard.deliver(messages)
        case .request(let request): shard.handle(request)
        case .tick: shard.tick()
        case .durable(let token, let slot, let result): shard.durable(token: token, slot: slot, result: result)
        case .applied(let r, let index, let conf, let entries, let failure):
            shard.applied(r, through: index, confState: conf, entries: entries, failure: failure)
        case .nodeDown(let slot): shard.nodeDown(slot)
        case .nodeUp(let slot): shard.nodeUp(slot)
        case .add(let list): for (r, campaign) in list { shard.add(r, campaign: campaign) }
        case .call(let body): body(shard)
        }
    }
}

/// A thread applying committed entries to state machines. A replica always goes to the
/// same apply worker, so its jobs run in order.
final class ApplyWorker: @unchecked Sendable {
    private let lock = ConditionLock()
    private var jobs: [ApplyJob] = []
    private var stopping = false
    private var thread: OSThread?
    let index: Int

    init(index: Int) { self.index = index }

    func enqueue(_ batch: [ApplyJob]) {
        lock.withLock {
            let wasEmpty = jobs.isEmpty
            jobs.append(contentsOf: batch)
            if wasEmpty { lock.broadcast() }
        }
    }

    func start(host: NodeHost) {
        thread = OSThread(name: "raftd-apply-\(index)") { [self] in run(host) }
    }

    /// Stops after the queued jobs ran.
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        thread?.join()
        thread = nil
    }

    private func run(_ host: NodeHost) {
        while true {
            var batch: [ApplyJob] = []
            let stop: Bool = lock.withLock {
                while jobs.isEmpty && !stopping { lock.wait() }
                swap(&batch, &jobs)
                return stopping && batch.isEmpty
            }
            if stop { return }
            for job in batch { host.run(job) }
        }
    }
}

import RaftConsensus

/// One worker thread and the shard it owns. Inputs arrive in a bounded inbox; the thread
/// drains everything queued, feeds it to the shard, runs one turn and hands the output to
/// the host to carry out, then sleeps until more arrives.
final class HostWorker: @unchecked Sendable {
    enum Event {
        /// Messages of one frame, with the node slot it came from (nil: redelivered).
        case messages([PeerMessage], from: Int?)
        case request(HostRequest)
        case tick
        case durable(token: UInt64, slot: Int, Result<Void, WALError>)
        case applied([AppliedReport])
        case nodeDown(Int)
        case nodeUp(Int)
        case add([(Replica, Bool)])
        case call(@Sendable (HostShard) -> Void)
    }

    let shard: HostShard
    private let inbox: WorkQueue<Event>

    init(shard: HostShard, maxEvents: Int) {
        self.shard = shard
        inbox = WorkQueue(capacity: maxEvents)
    }

    /// Queues an external input; false when the inbox is full (the caller refuses or drops).
    func offer(_ event: Event) -> Bool { inbox.offer(event) }

    /// Queues an internal event (completions, ticks): never refused, or the pipeline would
    /// lose track of its own work. Its volume is bounded by the work that produced it.
    func post(_ event: Event) { inbox.post(CollectionOfOne(event)) }

    func start(host: NodeHost) {
        inbox.start(name: "raftd-host-\(shard.index)") { [self] batch in
            // Ticks queued while the worker was busy collapse into one: a burst of ticks with
            // no turn between them could fire CheckQuorum with no chance to hear answers.
            let lastTick = batch.lastIndex {
                if case .tick = $0 { return true } else { return false }
            }
            for (i, event) in batch.enumerated() {
                if case .tick = event, i != lastTick { continue }
                handle(event)
            }
            host.carryOut(shard.runTurn(), from: self)
        }
    }

    func stop() { inbox.stop() }

    private func handle(_ event: Event) {
        switch event {
        case .messages(let messages, let from): shard.deliver(messages, fromSlot: from)
        case .request(let request): shard.handle(request)
        case .tick: shard.tick()
        case .durable(let token, let slot, let result): shard.durable(token: token, slot: slot, result: result)
        case .applied(let reports):
            for a in reports {
                shard.applied(
                    a.key, through: a.through, confState: a.confState, route: a.route, entries: a.entries,
                    failure: a.failure, kind: a.kind)
            }
        case .nodeDown(let slot): shard.nodeDown(slot)
        case .nodeUp(let slot): shard.nodeUp(slot)
        case .add(let list): for (r, campaign) in list { shard.add(r, campaign: campaign) }
        case .call(let body): body(shard)
        }
    }
}

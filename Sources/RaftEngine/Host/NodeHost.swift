import Logging
import RaftConsensus
import Synchronization

/// Hosts the Raft groups of every storage of one node: up to 100,000 replicas served by a
/// fixed set of worker threads, with no task, timer or thread per group.
///
/// ```
///  transport ──frames──> receive ──per shard──> worker inbox ─┐
///  API (async) ──requests─────────────────────> worker inbox ─┤
///  tick thread ──ticks, liveness events───────> worker inbox ─┤
///                                                             ▼
///   worker turn: step every replica with input, one Ready each
///     ├─> one WAL append per storage (one fdatasync, group commit with other workers)
///     ├─> one frame per peer node
///     └─> apply jobs ──> apply workers ──> state machines, then answer requests
/// ```
///
/// See docs/HOST.md for quiescing, node liveness, dormant groups and the request contract.
public final class NodeHost: FrameReceiver, @unchecked Sendable {
    public let nodeID: NodeID
    public let options: Options
    public let cluster: ClusterMap
    /// Grows by one with each start, recorded in every storage's metadata before the host
    /// serves (never the wall clock, which can step back across a restart): peers notice a
    /// restart by a larger value and drop late frames of an older one.
    public let boot: UInt64
    let storages: [Storage]
    let context: ShardContext
    let workers: [HostWorker]
    let appliers: [ApplyWorker]
    let stateMachines: StateMachineFactory
    let logger = Logger(label: "raftd.host")

    let transportBox = Mutex<(any Transport)?>(nil)
    let liveness: Mutex<NodeLiveness>
    let clock: MonotonicClock
    /// Records applied indices in the metadata stores, off the tick thread (an LMDB write
    /// transaction can wait behind a long one, such as a bulk `createReplicas`).
    let appliedFlusher = WorkQueue<[[GroupID: AppliedUpdate]]>()
    /// Deletes the data of replicas that left their group, off the workers' threads.
    let retirer = WorkQueue<RetiredReplica>()
    let tickCount = Atomic<UInt64>(0)
    let pendingRequests = Atomic<Int>(0)
    let applyBacklog = Atomic<Int>(0)
    /// Proposals by how they ended (metrics).
    public let proposalResults = ProposalResults()
    let stopped = Atomic<Bool>(false)
    /// WAL units refused for a retryable reason, submitted again on the next tick.
    let parkedUnits = Mutex<[@Sendable () -> Void]>([])
    /// Storage slots whose WAL refuses writes right now (logged once per run of refusals).
    let walRefusing = Mutex<Set<Int>>([])
    /// Retryable WAL refusals so far.
    let walRetries = Atomic<UInt64>(0)
    /// Replicas that left their group and whose data was deleted, since start.
    let retiredCount = Atomic<UInt64>(0)
    /// Log groups of retired replicas, per storage slot: a WAL unit parked by a full disk and
    /// submitted again after the group's removal leaves their writes out (they would
    /// recreate the group). Checked and filled under this lock, so a unit is either queued
    /// before the removal or filtered.
    let retiredGroups = Mutex<[Set<GroupID>]>([])
    /// Peers' storages' incarnations as they answered (new partitions record them).
    let knownIncarnations = Mutex<[StorageName: StorageIncarnation]>([:])
    /// Replicas whose data was deleted after they left their group, since start (metrics).
    public var retiredReplicas: UInt64 { retiredCount.load(ordering: .relaxed) }
    /// Times a peer node was declared dead (restarts included).
    let peerDeaths = Atomic<UInt64>(0)
    /// Partitions whose replication mode is being changed (one change at a time each).
    let modeChanges = Mutex<Set<PartitionKey>>([])
    /// Partitions with a `seekLeader` request queued (see `seekLeader`).
    let seeking = Mutex<Set<PartitionKey>>([])
    var tickThread: OSThread?
    let tickLock = ConditionLock()
    var tickStopping = false

    /// Opens a host over opened storages (it owns them from now on and closes them in
    /// `stop()`). Every Raft replica registered in their metadata is loaded dormant: no
    /// replica campaigns at start; leaders are confirmed lazily by traffic.
    public init(
        nodeID: NodeID, cluster: ClusterMap, storages: [Storage], options: Options = Options(),
        clock: MonotonicClock = .system, stateMachines: @escaping StateMachineFactory
    ) throws(HostError) {
        if let problem = options.validate() { throw .invalid("host options: \(problem)") }
        guard let selfSlot = cluster.nodes.firstIndex(of: nodeID) else {
            throw .invalid("node \(nodeID) is not in the cluster map")
        }
        for storage in storages {
            let name = storage.metadata.identity.storageName
            guard cluster.node(serving: name) == nodeID else {
                throw .invalid("storage \(name) is not served by node \(nodeID) in the cluster map")
            }
            // A proposal is one entry, and one entry must fit one WAL batch.
            guard options.maxProposalBytes <= storage.log.maxEntryPayloadBytes else {
                throw .invalid(
                    "maxProposalBytes \(options.maxProposalBytes) must fit one WAL batch of \(name) (entries up to \(storage.log.maxEntryPayloadBytes) bytes)"
                )
            }
        }
        self.nodeID = nodeID
        self.options = options
        self.cluster = cluster
        self.storages = storages
        self.stateMachines = stateMachines
        self.clock = clock
        boot = try Self.nextBoot(storages)
        let context = ShardContext(
            options: options, nodes: cluster.nodes, selfSlot: selfSlot, logs: storages.map(\.log),
            storageNames: storages.map(\.metadata.identity.storageName), clock: clock, boot: boot,
            cluster: cluster)
        self.context = context
        workers = (0..<options.workers).map { i in
            HostWorker(
                shard: HostShard(index: i, context: context, seed: options.seed), maxEvents: options.maxInboxEvents)
        }
        appliers = (0..<options.applyWorkers).map { ApplyWorker(index: $0) }
        liveness = Mutex(
            NodeLiveness(
                peerCount: cluster.nodes.count, selfSlot: selfSlot,
                timeoutNanoseconds: options.livenessTimeoutTicks * options.tickMilliseconds * 1_000_000,
                now: clock.nanoseconds))
        try loadReplicas()
    }

    /// One more than the largest boot value any of the storages recorded, recorded in all
    /// of them before the host sends anything.
    private static func nextBoot(_ storages: [Storage]) throws(HostError) -> UInt64 {
        var last: UInt64 = 0
        do {
            for s in storages { last = max(last, try s.metadata.lastBoot()) }
            for s in storages { try s.metadata.recordBoot(last + 1) }
        } catch {
            throw .invalid("recording the node's boot value: \(error)")
        }
        return last + 1
    }

    /// Connects the host to its transport and starts its threads. `bulk`: the application's
    /// bulk service, in place before the first message is stepped. An application whose
    /// entries name attachments must pass it: without one, appends are admitted unchecked.
    public func start(
        transport: any Transport, bulk: (any BulkService)? = nil, snapshots: (any SnapshotService)? = nil
    ) {
        context.bulk.set(bulk)
        context.snapshots.set(snapshots)
        transportBox.withLock { $0 = transport }
        for w in workers { w.start(host: self) }
        for a in appliers { a.start(host: self) }
        appliedFlusher.start(name: "raftd-applied") { [self] batches in flushApplied(batches) }
        retirer.start(name: "raftd-retire") { [self] items in for item in items { deleteRetired(item) } }

        tickThread = OSThread(name: "raftd-tick") { [self] in runTicks() }
    }

    /// Stops the threads, answers every request in flight with `.stopped`, records applied
    /// indices and closes the storages (their WALs finish what is queued first).
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        tickLock.withLock {
            tickStopping = true
            tickLock.broadcast()
        }
        tickThread?.join()
        tickThread = nil
        for w in workers { w.stop() }
        // After the workers: the appends they step while finishing their inboxes are still
        // admitted by the service. Unplugging it breaks the host-service reference cycle.
        context.bulk.current?.stop()
        context.bulk.set(nil)
        context.snapshots.current?.stop()
        context.snapshots.set(nil)
        for a in appliers { a.stop() }
        for w in workers {
            w.shard.failAllRequests(.stopped)
            appliedFlusher.post(CollectionOfOne(w.shard.takeAppliedUpdates()))
        }
        appliedFlusher.stop()
        retirer.stop()
        for s in storages { s.close() }
    }

    /// Nanoseconds since any frame came from `node` (liveness frames go every liveness
    /// interval, so a live peer stays under it); nil for this node, unknown nodes and
    /// nodes never heard from since this process started.
    public func silence(of node: NodeID) -> Int? {
        guard let slot = context.nodes.firstIndex(of: node), slot != context.selfSlot else { return nil }
        let now = clock.nanoseconds
        return liveness.withLock { $0.silence(of: slot, now: now) }
    }

    // MARK: - Replicas

    /// The metadata store of a storage this node serves (its registry of partitions and
    /// repositories), or nil.
    public func metadata(of storage: StorageName) -> MetadataStore? {
        context.storageNames.firstIndex(of: storage).map { storages[$0].metadata }
    }

    /// Creates replicas on this node's storages: registers them in each storage's metadata
    /// (one transaction per storage) and starts them. Replicas with `campaign` set campaign
    /// in paced slots (one that is its group's only voter at once); the others wait, not
    /// ticked, for their group's first messages.
    public func createReplicas(_ specs: [ReplicaSpec]) throws(HostError) {
        var byStorage: [Int: [ReplicaSpec]] = [:]
        for spec in specs {
            guard let slot = context.storageNames.firstIndex(of: spec.storage) else {
                throw .invalid("storage \(spec.storage) is not served by this node")
            }
            let current = storages[slot].metadata.identity.incarnation
            if let named = spec.replicas.first(where: { $0.member == spec.member })?.incarnation, named != current {
                throw .invalid(
                    "member \(spec.member) of \(spec.partition) was added for incarnation \(named) of \(spec.storage), which is at \(current) now: replace the member"
                )
            }
            guard spec.replicas.contains(where: { $0.member == spec.member && $0.storage == spec.storage }) else {
                throw .invalid("replica \(spec.member)@\(spec.storage) is not among the replicas of \(spec.partition)")
            }
            byStorage[slot, default: []].append(spec)
        }
        var perWorker: [[(Replica, Bool)]] = Array(repeating: [], count: workers.count)
        for slot in byStorage.keys.sorted() {
            let list = byStorage[slot]!
            var new: [MetadataStore.NewReplica] = []
            var confs: [ConfState] = []
            for spec in list {
                do {
                    let route = try RouteEntry(version: spec.routeVersion, replicas: spec.replicas)
                    let voters = spec.replicas.filter { $0.role == .voter }.map(\.member)
                    let learners = spec.replicas.filter { $0.role == .learner }.map(\.member)
                    // A joining replica starts from the configuration the log starts from.
                    let stored =
                        try spec.startConf.map { (conf) throws(MetadataError) in try StoredConfState(conf) }
                        ?? StoredConfState(voters: voters, learners: learners)
                    if spec.mode == .local && (voters != [spec.member] || !learners.isEmpty) {
                        throw HostError.invalid("a local partition has exactly one replica, itself a voter")
                    }
                    new.append(
                        MetadataStore.NewReplica(key: spec.partition, route: route, confState: stored, mode: spec.mode))
                    confs.append(ConfState(stored))
                } catch {
                    throw .invalid("replica of \(spec.partition): \(error)")
                }
            }
            let records: [PartitionRecord]
            do {
                records = try storages[slot].metadata.createRaftReplicas(new)
            } catch {
                throw .invalid("registering \(list.count) replicas on \(context.storageNames[slot]): \(error)")
            }
            for (i, spec) in list.enumerated() {
                let replica = try factory.makeReplica(
                    key: ReplicaKey(partition: spec.partition, member: spec.member), group: records[i].group,
                    storageSlot: slot, route: spec.replicas, confState: confs[i], applied: .zero, mode: spec.mode,
                    routeVersion: spec.routeVersion, initialConf: confs[i])
                perWorker[shardIndex(spec.partition)].append((replica, spec.campaign))
            }
        }
        for (i, list) in perWorker.enumerated() where !list.isEmpty { workers[i].post(.add(list)) }
    }

    var factory: ReplicaFactory { ReplicaFactory(context: context, stateMachines: stateMachines) }

    /// Loads every registered Raft replica dormant, as a follower that knows no leader.
    private func loadReplicas() throws(HostError) {
        for slot in storages.indices {
            let loaded = try factory.load(storage: storages[slot], slot: slot)
            for replica in loaded.replicas {
                workers[shardIndex(replica.key.partition)].shard.add(replica, campaign: false)
            }
            // Found leaving at start: their deletion is finished once the host runs.
            retirer.post(loaded.leaving)
        }
    }

    func shardIndex(_ partition: PartitionKey) -> Int {
        Int(HostShard.stableHash(partition) % UInt64(workers.count))
    }

    // MARK: - Peer frames

    /// Takes a frame from a peer: notes the peer alive, then hands each worker its messages.
    public func receive(_ frame: PeerFrame) {
        guard frame.to == nodeID, !stopped.load(ordering: .relaxed),
            let slot = context.nodes.firstIndex(of: frame.from)
        else { return }
        if slot != context.selfSlot {
            let now = clock.nanoseconds
            guard liveness.withLock({ $0.heard(from: slot, boot: frame.senderBoot, now: now) }) else { return }
        }
        guard !frame.messages.isEmpty else { return }
        if workers.count == 1 {
            _ = workers[0].offer(.messages(frame.messages, from: slot))
            return
        }
        var split: [[PeerMessage]] = Array(repeating: [], count: workers.count)
        for m in frame.messages { split[shardIndex(m.partition)].append(m) }
        for (i, list) in split.enumerated() where !list.isEmpty { _ = workers[i].offer(.messages(list, from: slot)) }
    }

    // MARK: - Bulk path

    /// Answers a peer's bulk request through the bulk service.
    public func serve(_ request: BulkRequest, from node: NodeID) async -> BulkResponse {
        guard !stopped.load(ordering: .relaxed) else { return .refused("node \(nodeID) is stopping") }
        guard node != nodeID, context.nodes.contains(node) else {
            return .refused("node \(node) is not a peer in this cluster")
        }
        if case .createReplica(let spec) = request { return await createReplica(spec, for: node) }
        if case .transferLeadership(let partition, let member) = request {
            // Only the minting node asks (see BulkRequest.transferLeadership).
            guard cluster.node(serving: partition.authority) == node else {
                return .refused(
                    "node \(node) does not serve storage \(partition.authority), the authority of \(partition)")
            }
            do {
                try await transferLeadership(partition, to: member)
                return .stored
            } catch {
                return .refused("\(error)")
            }
        }
        if case .routes(let keys, let paths) = request { return await serveRoutes(keys, paths: paths) }
        if case .storageIncarnation(let name) = request {
            guard let slot = context.storageNames.firstIndex(of: name) else {
                return .refused("storage \(name) is not served by node \(nodeID)")
            }
            return .data(
                withUnsafeBytes(of: storages[slot].metadata.identity.incarnation.rawValue.bigEndian) { Array($0) })
        }
        if case .snapshotChunk(let chunk) = request {
            guard let service = context.snapshots.current else {
                return .refused("node \(nodeID) takes no snapshots")
            }
            return await service.receive(chunk, from: node)
        }
        guard let service = context.bulk.current else { return .refused("node \(nodeID) serves no bulk data") }
        return await service.serve(request, from: node)
    }

    /// Asks `node` (which leads `partition`, a partition this node minted) to hand its
    /// leadership to `member`.
    public func transferLeadershipOnPeer(
        _ partition: PartitionKey, to member: MemberID, at node: NodeID
    ) async throws(HostError) {
        let response: BulkResponse
        do {
            response = try await bulkRequest(.transferLeadership(partition: partition, to: member), to: node)
        } catch {
            throw .unreachable("asking node \(node) to hand \(partition) to member \(member): \(error)")
        }
        switch response {
        case .stored: return
        case .refused(let reason): throw .invalid("node \(node) did not hand over \(partition): \(reason)")
        case .data: throw .invalid("node \(node) answered a leadership transfer with data")
        }
    }

    /// Sends a bulk request to a peer node.
    public func bulkRequest(_ request: BulkRequest, to node: NodeID) async throws(BulkError) -> BulkResponse {
        guard !stopped.load(ordering: .relaxed), node != nodeID,
            let transport = transportBox.withLock({ $0 })
        else { throw .unreachable(node) }
        return try await transport.request(request, to: node)
    }

    /// Hands messages the bulk service held back (their attachments are here now) to their
    /// shards again. Stepping a message twice is harmless: Raft answers a stale append from
    /// the log it has.
    public func redeliver(_ messages: [PeerMessage]) {
        guard !stopped.load(ordering: .relaxed) else { return }
        for m in messages { _ = workers[shardIndex(m.partition)].offer(.messages([m], from: nil)) }
    }

    /// Steps a snapshot message whose stream the snapshot service received and staged.
    public func deliverSnapshot(_ message: PeerMessage) {
        guard !stopped.load(ordering: .relaxed), message.message.kind == .snapshot else { return }
        workers[shardIndex(message.partition)].post(.call { shard in shard.deliverSnapshot(message) })
    }

    // MARK: - Carrying out a turn

    func carryOut(_ out: TurnOutput, from worker: HostWorker) {
        let transport = transportBox.withLock { $0 }
        for slot in out.frames.indices where !out.frames[slot].isEmpty {
            let frame = PeerFrame(from: nodeID, to: context.nodes[slot], senderBoot: boot, messages: out.frames[slot])
            if slot == context.selfSlot {
                receive(frame)
            } else {
                transport?.send(frame)
            }
        }
        if out.hasWrites {
            for slot in out.writes.indices where !out.writes[slot].isEmpty {
                appendWrites(out.writes[slot], token: out.token, slot: slot, worker: worker)
            }
        }
        if !out.snapshotsToPrepare.isEmpty || !out.snapshotsToSend.isEmpty {
            carryOutSnapshots(out, from: worker)
        }
        if !out.retired.isEmpty { retirer.post(out.retired) }
        if !out.applyJobs.isEmpty {
            var perApplier: [[ApplyJob]] = Array(repeating: [], count: appliers.count)
            var bytes = 0
            for job in out.applyJobs {
                bytes += job.bytes
                perApplier[Int(HostShard.stableHash(job.target.key.partition) % UInt64(appliers.count))].append(job)
            }
            applyBacklog.wrappingAdd(bytes, ordering: .relaxed)
            for (i, jobs) in perApplier.enumerated() where !jobs.isEmpty { appliers[i].enqueue(jobs) }
        }
    }

    /// Appends one turn's writes for one storage as one unit (the WAL cuts it into
    /// batches, and accepts or refuses it whole) and reports the storage durable. A unit
    /// refused for a retryable reason (queue full, no space for a new segment) is parked
    /// and submitted again on the next tick: backpressure, not failure; its replicas wait
    /// meanwhile, and no other write of theirs can overtake it (they take no Ready until it
    /// is durable). A refusal that means the host built a bad write is a bug: trap.
    func appendWrites(_ all: [GroupWrite], token: UInt64, slot: Int, worker: HostWorker) {
        retiredGroups.withLock { retired in
            let writes =
                retired.indices.contains(slot) && !retired[slot].isEmpty
                ? all.filter { !retired[slot].contains($0.group) } : all
            submitWrites(writes, token: token, slot: slot, worker: worker)
        }
    }

    private func submitWrites(_ writes: [GroupWrite], token: UInt64, slot: Int, worker: HostWorker) {
        context.logs[slot].append(writes) { [self] result in
            if case .failure(let error) = result {
                switch error.disposition {
                case .retry where !stopped.load(ordering: .relaxed):
                    walRefused(slot, error)
                    parkedUnits.withLock {
                        $0.append({ [self] in appendWrites(writes, token: token, slot: slot, worker: worker) })
                    }
                    return
                case .callerBug:
                    preconditionFailure(
                        "the host built a write the WAL of \(context.storageNames[slot]) refuses: \(error)")
                default:
                    break
                }
            } else {
                walAccepted(slot)
            }
            worker.post(.durable(token: token, slot: slot, result))
        }
    }

    /// Counts a retryable WAL refusal; logs the first of a run per storage.
    private func walRefused(_ slot: Int, _ error: WALError) {
        walRetries.wrappingAdd(1, ordering: .relaxed)
        let first = walRefusing.withLock { refusing in refusing.insert(slot).inserted }
        if first {
            logger.warning(
                "WAL of \(context.storageNames[slot]) refuses writes for now (\(error)); they are retried every tick")
        }
    }

    private func walAccepted(_ slot: Int) {
        guard walRefusing.withLock({ !$0.isEmpty }) else { return }
        if walRefusing.withLock({ $0.remove(slot) }) != nil {
            logger.notice("WAL of \(context.storageNames[slot]) accepts writes again")
        }
    }

    private func carryOutSnapshots(_ out: TurnOutput, from worker: HostWorker) {
        guard let service = context.snapshots.current else {
            for (message, _) in out.snapshotsToSend {
                let key = ReplicaKey(partition: message.partition, member: message.message.from)
                worker.post(
                    .call { shard in
                        shard.snapshotSent(key, to: message.message.to, index: .zero, succeeded: false)
                    })
            }
            return
        }
        for target in out.snapshotsToPrepare {
            let key = target.key
            service.prepare(key, stateMachine: target.stateMachine) { index, data in
                worker.post(.call { shard in shard.snapshotPrepared(key, index: index, data: data) })
            }
        }
        for (message, slot) in out.snapshotsToSend {
            let key = ReplicaKey(partition: message.partition, member: message.message.from)
            let member = message.message.to
            let index = message.message.snapshot?.metadata.index ?? .zero
            service.send(message, to: context.nodes[slot]) { succeeded in
                worker.post(.call { shard in shard.snapshotSent(key, to: member, index: index, succeeded: succeeded) })
            }
        }
    }

    /// Runs one apply job on an apply worker thread.
    /// Runs a batch of apply jobs on an apply worker thread, then tells each worker what
    /// its replicas applied, in one event per worker (not one per job).
    func run(_ jobs: [ApplyJob]) {
        var reports: [[AppliedReport]] = Array(repeating: [], count: workers.count)
        var bytes = 0
        var failed: [ReplicaKey: String] = [:]
        for job in jobs {
            var failure: String?
            if let earlier = failed[job.target.key] {
                // The replica stopped at an earlier job of this batch: nothing after it runs.
                failure = earlier
                job.refuse(earlier)
            } else {
                failure = job.run()
            }
            if let failure { failed[job.target.key] = failure }
            if failure == nil, case .install(let snapshot) = job.kind {
                failure = recordInstall(snapshot.metadata, of: job.target)
            }
            if let failure {
                logger.error("replica \(job.target.key) stopped: its state machine failed to apply: \(failure)")
            }
            bytes += job.bytes
            reports[shardIndex(job.target.key.partition)].append(
                AppliedReport(
                    key: job.target.key, through: job.through, confState: job.confState, route: job.route,
                    entries: job.entries.count, failure: failure, kind: job.kind))
        }
        applyBacklog.wrappingSubtract(bytes, ordering: .relaxed)
        for (i, list) in reports.enumerated() where !list.isEmpty { workers[i].post(.applied(list)) }
    }

}

extension NodeHost {
    /// An installed snapshot's configuration and index go to the metadata store before its
    /// log reset goes to the WAL: a restart then finds the configuration that goes with the
    /// log (the state machine's install record covers the reset itself).
    func recordInstall(_ metadata: SnapshotMetadata, of target: ApplyTarget) -> String? {
        do {
            let store = storages[target.storageSlot].metadata
            try store.recordApplied([(target.group, metadata.index, try StoredConfState(metadata.confState))])
            return nil
        } catch {
            return "recording the configuration of snapshot \(metadata): \(error)"
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

import RaftConsensus

extension NodeHost {
    // MARK: - Requests

    /// Proposes `data` to the partition's group. Returns the entry's index once it is
    /// committed and applied by this node's state machine; a retryable error when this
    /// replica does not lead, is overloaded, or lost leadership before the entry committed.
    public func propose(
        _ partition: PartitionKey, _ data: [UInt8], timeoutTicks: Int? = nil
    ) async throws(HostError)
        -> LogIndex
    {
        try await awaiting { propose(partition, data, timeoutTicks: timeoutTicks, completion: $0) }
    }

    /// Callback form of `propose` (the completion runs on a host thread; keep it short).
    /// The request is handed to the partition's worker before this returns, so calls made
    /// in an order are appended in that order. `fence`: see `ProposalFence`.
    public func propose(
        _ partition: PartitionKey, _ data: [UInt8], fence: ProposalFence? = nil, timeoutTicks: Int? = nil,
        completion callerCompletion: @escaping @Sendable (Result<LogIndex, HostError>) -> Void
    ) {
        let results = proposalResults
        let completion: @Sendable (Result<LogIndex, HostError>) -> Void = { result in
            results.count(result)
            callerCompletion(result)
        }
        guard data.count <= options.maxProposalBytes else {
            return completion(.failure(.invalid("proposal of \(data.count) bytes exceeds \(options.maxProposalBytes)")))
        }
        guard applyBacklog.load(ordering: .relaxed) <= options.maxApplyBacklogBytes else {
            return completion(.failure(.overloaded("apply backlog over \(options.maxApplyBacklogBytes) bytes")))
        }
        submit(partition, completion, timeoutTicks: timeoutTicks) {
            .propose(partition, data, fence: fence, deadlineNanoseconds: $0, $1)
        }
    }

    /// Returns an index at which a read of the partition's state machine is linearizable,
    /// once this node's state machine has applied through it.
    public func read(
        _ partition: PartitionKey, consistency: ReadConsistency = .readIndex, timeoutTicks: Int? = nil
    )
        async throws(HostError) -> LogIndex
    {
        try await awaiting { completion in
            submit(partition, completion, timeoutTicks: timeoutTicks) {
                .read(partition, consistency, deadlineNanoseconds: $0, $1)
            }
        }
    }

    /// Proposes a membership change; returns its index once applied here.
    public func changeMembership(
        _ partition: PartitionKey, _ change: ConfChange, timeoutTicks: Int? = nil
    )
        async throws(HostError) -> LogIndex
    {
        try await awaiting { completion in
            submit(partition, completion, timeoutTicks: timeoutTicks) {
                .changeMembership(partition, change, deadlineNanoseconds: $0, $1)
            }
        }
    }

    /// Asks the leader (this replica) to hand leadership to `member`; returns once the
    /// transfer started (watch `status` for its end).
    public func transferLeadership(_ partition: PartitionKey, to member: MemberID) async throws(HostError) {
        _ = try await awaiting { completion in
            submit(partition, completion) { _, promise in .transferLeadership(partition, member, promise) }
        }
    }

    /// The state of the local replica of `partition`.
    public func status(of partition: PartitionKey) async throws(HostError) -> ReplicaStatus {
        let result: Result<ReplicaStatus, HostError> = await withCheckedContinuation { continuation in
            let ok = workers[shardIndex(partition)].offer(
                .request(.status(partition) { continuation.resume(returning: $0) }))
            if !ok { continuation.resume(returning: .failure(.overloaded("worker inbox full"))) }
        }
        return try result.get()
    }

    /// Makes the local replica of `partition` look for its leader when it knows none: it
    /// wakes and, after an election timeout without one, campaigns (a group's only voter
    /// campaigns at once). A caller that reads `status` instead of proposing (the partition
    /// writer) uses it, or a group whose replicas were all loaded dormant after a restart
    /// would wait for traffic that never comes.
    public func seekLeader(of partition: PartitionKey) {
        // One request in a worker's inbox per partition, however often writers ask.
        guard seeking.withLock({ $0.insert(partition).inserted }) else { return }
        let handled: @Sendable () -> Void = { [self] in _ = seeking.withLock { $0.remove(partition) } }
        if !workers[shardIndex(partition)].offer(.request(.seekLeader(partition, handled: handled))) { handled() }
    }

    // MARK: - Replication mode

    /// Switches this node's replica of `partition` to `mode` and records it in its
    /// storage's metadata. No data moves and the log stays as it is: every LSN is kept, and
    /// the next write takes the next index. To `.local` only a partition whose one member
    /// is this replica (remove the others first); a local partition refuses membership
    /// changes until it is switched back to `.raft`.
    public func setReplicationMode(
        _ mode: ReplicationMode, of partition: PartitionKey, timeoutTicks: Int? = nil
    ) async throws(HostError) {
        // One change of mode per partition at a time: the metadata must end as memory does.
        guard modeChanges.withLock({ $0.insert(partition).inserted }) else {
            throw .overloaded("a change of the replication mode of \(partition) is in progress")
        }
        defer { _ = modeChanges.withLock { $0.remove(partition) } }
        if mode == .raft {
            // Widening: recorded first, so that no crash or failed write leaves a group
            // that gained members recorded as local (it would never be ticked again).
            let storage = try await status(of: partition).storage
            guard let metadata = metadata(of: storage) else { throw .invalid("storage \(storage) is not served here") }
            do { try metadata.updateReplicationMode(.raft, of: partition) } catch {
                throw .invalid("recording the replication mode of \(partition) in \(storage): \(error)")
            }
            _ = try await switchModeRetrying(.raft, of: partition, deadline: clock.nanoseconds + 10_000_000_000)
            return
        }
        // Narrowing: checked and switched in memory first (from then on no membership
        // change is accepted), then recorded; a failed write switches back.
        let deadline =
            clock.nanoseconds + (timeoutTicks ?? options.requestTimeoutTicks) * options.tickMilliseconds * 1_000_000
        let storage = try await switchModeRetrying(.local, of: partition, deadline: deadline)
        guard let metadata = metadata(of: storage) else { throw .invalid("storage \(storage) is not served here") }
        do {
            try metadata.updateReplicationMode(.local, of: partition)
        } catch {
            _ = try? await switchModeRetrying(.raft, of: partition, deadline: clock.nanoseconds + 10_000_000_000)
            throw .invalid("recording the replication mode of \(partition) in \(storage): \(error)")
        }
    }

    /// `switchMode`, again while the answer is retryable (a sole voter campaigning first, a
    /// membership change being applied, a full inbox) and the deadline allows.
    private func switchModeRetrying(
        _ mode: ReplicationMode, of partition: PartitionKey, deadline: Int
    ) async throws(HostError) -> StorageName {
        while true {
            do {
                return try await switchMode(mode, of: partition)
            } catch {
                switch error {
                case .notLeader, .overloaded: break
                default: throw error
                }
                guard clock.nanoseconds < deadline else { throw error }
                try? await Task.sleep(nanoseconds: 5_000_000)
            }
        }
    }

    /// Turns every local partition of `storage` into a single-node Raft cluster, in one
    /// metadata transaction; returns the partitions converted. Replicas can then be added
    /// to them (the membership issue).
    public func convertLocalPartitionsToRaft(on storage: StorageName) async throws(HostError) -> [PartitionKey] {
        guard let metadata = metadata(of: storage) else { throw .invalid("storage \(storage) is not served here") }
        let keys: [PartitionKey]
        do { keys = try metadata.updateReplicationModes(from: .local, to: .raft) } catch {
            throw .invalid("switching the local partitions of \(storage) to raft: \(error)")
        }
        var failed: [String] = []
        for key in keys {
            do { _ = try await switchModeRetrying(.raft, of: key, deadline: clock.nanoseconds + 10_000_000_000) } catch
            {
                failed.append("\(key): \(error)")
            }
        }
        guard failed.isEmpty else {
            // Recorded as raft: a restart loads them so; until then they stay local in memory.
            throw .invalid(
                "\(failed.count) of \(keys.count) partitions of \(storage) are recorded as raft but still local until a restart: \(failed.prefix(3).joined(separator: "; "))"
            )
        }
        return keys
    }

    /// The in-memory switch, on the partition's worker; answers the replica's storage.
    private func switchMode(_ mode: ReplicationMode, of partition: PartitionKey) async throws(HostError) -> StorageName
    {
        let result: Result<StorageName, HostError> = await withCheckedContinuation { continuation in
            let ok = workers[shardIndex(partition)].offer(
                .request(.setMode(partition, mode) { continuation.resume(returning: $0) }))
            if !ok { continuation.resume(returning: .failure(.overloaded("worker inbox full"))) }
        }
        return try result.get()
    }

    /// Counters summed over the workers (read on their threads).
    public func counters() async -> HostCounters {
        var total = HostCounters()
        for w in workers {
            let c: HostCounters = await withCheckedContinuation { continuation in
                let accepted = w.offer(.call { shard in continuation.resume(returning: shard.snapshotCounters) })
                if !accepted { continuation.resume(returning: HostCounters()) }
            }
            total.add(c)
        }
        return total
    }

    /// Shrinks every quiesced replica to a dormant record now (benchmarks, tests and
    /// operators who want memory back before the timer does it). Returns how many.
    public func suspendQuiescedReplicas() async -> Int {
        var total = 0
        for w in workers {
            total += await withCheckedContinuation { continuation in
                let accepted = w.offer(.call { shard in continuation.resume(returning: shard.suspendAllQuiesced()) })
                if !accepted { continuation.resume(returning: 0) }
            }
        }
        return total
    }

    /// Retryable WAL refusals (queue full, no space for a new segment) so far: each refused
    /// unit was retried on the next tick.
    public var walRetryCount: UInt64 { walRetries.load(ordering: .relaxed) }

    /// Times this node declared a peer dead (a restart counts: the peer's leaderships ended).
    public var peerDeathCount: UInt64 { peerDeaths.load(ordering: .relaxed) }

    /// The current tick.
    public var currentTick: UInt64 { tickCount.load(ordering: .relaxed) }

    /// The WAL counters of each storage (batches, fdatasyncs, entries, bytes).
    public var walStatistics: [(storage: StorageName, statistics: WALStatistics)] {
        storages.map { ($0.metadata.identity.storageName, $0.log.statistics) }
    }

    func submit(
        _ partition: PartitionKey, _ completion: @escaping @Sendable (Result<LogIndex, HostError>) -> Void,
        timeoutTicks: Int? = nil, _ make: (Int, @escaping Promise<LogIndex>) -> HostRequest
    ) {
        guard !stopped.load(ordering: .relaxed) else { return completion(.failure(.stopped)) }
        let count = pendingRequests.wrappingAdd(1, ordering: .relaxed).newValue
        guard count <= options.maxPendingRequests else {
            pendingRequests.wrappingSubtract(1, ordering: .relaxed)
            return completion(.failure(.overloaded("\(options.maxPendingRequests) requests in flight")))
        }
        let promise: Promise<LogIndex> = { [self] result in
            pendingRequests.wrappingSubtract(1, ordering: .relaxed)
            completion(result)
        }
        // On the monotonic clock, as the shard expires it: ticks are merged under load.
        // At most a day (a caller may pass Int.max to mean "no timeout").
        let ticks = min(max(1, timeoutTicks ?? options.requestTimeoutTicks), 86_400_000 / options.tickMilliseconds)
        let timeout = ticks * options.tickMilliseconds * 1_000_000
        let deadline = clock.nanoseconds + timeout
        if !workers[shardIndex(partition)].offer(.request(make(deadline, promise))) {
            promise(.failure(.overloaded("worker inbox full")))
        }
    }

    func awaiting(
        _ start: (@escaping @Sendable (Result<LogIndex, HostError>) -> Void) -> Void
    ) async throws(HostError) -> LogIndex {
        let result: Result<LogIndex, HostError> = await withCheckedContinuation { continuation in
            start { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

}

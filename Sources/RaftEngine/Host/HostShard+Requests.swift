import RaftConsensus

/// A request handed to a shard.
package enum HostRequest {
    /// Deadlines are monotonic nanoseconds (`ShardContext.clock`). `fence`: see `ProposalFence`.
    case propose(PartitionKey, [UInt8], fence: ProposalFence? = nil, deadlineNanoseconds: Int, Promise<LogIndex>)
    case read(PartitionKey, ReadConsistency, deadlineNanoseconds: Int, Promise<LogIndex>)
    case changeMembership(PartitionKey, ConfChange, deadlineNanoseconds: Int, Promise<LogIndex>)
    case transferLeadership(PartitionKey, MemberID, Promise<LogIndex>)
    /// A membership edit, checked by the leader and proposed as one change.
    case membership(PartitionKey, MembershipEdit, deadlineNanoseconds: Int, Promise<LogIndex>)
    /// What the local replica knows of its partition's membership (nil: none hosted).
    case routeViews([PartitionKey], @Sendable ([RouteView]) -> Void)
    /// Peers' newer views: adopted, or the local replica retires (see `HostShard.adopt`).
    case adoptRoutes([RouteView], handled: @Sendable () -> Void)
    case status(PartitionKey, @Sendable (Result<ReplicaStatus, HostError>) -> Void)
    /// A replica that knows no leader starts looking for one (see `NodeHost.seekLeader`).
    case seekLeader(PartitionKey, handled: @Sendable () -> Void)
    /// Switches the replica's mode in memory (the host records it in the metadata store).
    case setMode(PartitionKey, ReplicationMode, @Sendable (Result<StorageName, HostError>) -> Void)
}

extension HostShard {
    package func handle(_ request: HostRequest) {
        switch request {
        case .propose(let partition, let data, let fence, let deadline, let promise):
            propose(partition, payload: .normal(data), fence: fence, deadline: deadline, promise)
        case .changeMembership(let partition, let change, let deadline, let promise):
            propose(partition, payload: .confChange(change), fence: nil, deadline: deadline, promise)
        case .read(let partition, let consistency, let deadline, let promise):
            read(partition, consistency, deadline: deadline, promise)
        case .transferLeadership(let partition, let target, let promise):
            transfer(partition, to: target, promise)
        case .membership(let partition, let edit, let deadline, let promise):
            changeMembership(partition, edit, deadline: deadline, promise)
        case .routeViews(let partitions, let answer):
            answer(partitions.compactMap { routeView($0) })
        case .adoptRoutes(let views, let handled):
            for view in views { adopt(view) }
            handled()
        case .status(let partition, let answer):
            answer(status(partition))
        case .setMode(let partition, let mode, let answer):
            answer(setMode(partition, mode))
        case .seekLeader(let partition, let handled):
            if case .success(let (r, node)) = target(partition), node.role != .leader { findLeader(r, node) }
            handled()
        }
    }

    /// To `.local`: only a group whose one voter is this replica, with no membership change
    /// in flight, and that leads (a sole voter that does not lead yet campaigns, and the
    /// caller asks again). To `.raft`: always; it is ticked again from its next activity.
    private func setMode(_ partition: PartitionKey, _ mode: ReplicationMode) -> Result<StorageName, HostError> {
        if mode == .raft {
            // Needs no rebuilding of a dormant replica: it wakes as a Raft one.
            guard let r = replica(for: partition) else { return .failure(.partitionNotFound(partition)) }
            r.mode = .raft
            r.lastActivityTick = currentTick
            if let node = r.node, !node.isQuiesced, !r.isFailed { setAwake(r) }
            return .success(r.storageName)
        }
        let (r, node): (Replica, RawNode)
        switch target(partition) {
        case .failure(let error): return .failure(error)
        case .success(let t): (r, node) = t
        }
        let conf = node.confState
        let members = conf.members
        guard conf.voters == [r.key.member], members.count == 1 else {
            return .failure(
                .invalid(
                    "\(partition) has \(members.count) members; local mode is for a partition whose only replica is this one: remove the others first"
                ))
        }
        guard node.role == .leader else {
            findLeader(r, node)
            return .failure(notLeader(r, node))
        }
        guard !node.hasPendingConfChange else {
            return .failure(.overloaded("a membership change of \(partition) is still being applied"))
        }
        r.mode = .local
        setNotAwake(r, as: .quiesced)
        noteQuiesced(r)
        return .success(r.storageName)
    }

    /// The replica for a request, resident; or the error to answer.
    private func target(_ partition: PartitionKey) -> Result<(Replica, RawNode), HostError> {
        guard let r = replica(for: partition) else { return .failure(.partitionNotFound(partition)) }
        if let failure = r.failure { return .failure(.replicaFailed(failure)) }
        guard let node = resident(r) else { return .failure(.replicaFailed("replica cannot be rebuilt")) }
        return .success((r, node))
    }

    private func notLeader(_ r: Replica, _ node: RawNode) -> HostError { notLeader(r, leader: node.leader) }

    /// The redirect to `leader`, with its node when the replica knows it.
    private func notLeader(_ r: Replica, leader: MemberID) -> HostError {
        let slot = leader == .none ? nil : r.nodeSlot(of: leader)
        return .notLeader(leader: leader, node: slot.map { context.nodes[$0] })
    }

    private func propose(
        _ partition: PartitionKey, payload: EntryPayload, fence: ProposalFence?, deadline: Int,
        _ promise: @escaping Promise<LogIndex>
    ) {
        let (r, node): (Replica, RawNode)
        switch target(partition) {
        case .failure(let error): return promise(.failure(error))
        case .success(let t): (r, node) = t
        }
        // A follower that knows its leader answers at once and stays asleep: waking it would
        // only make it time out and disturb a quiesced group with a pre-vote.
        guard node.role == .leader else {
            findLeader(r, node)
            return promise(.failure(notLeader(r, node)))
        }
        if case .confChange = payload, r.mode == .local {
            return promise(
                .failure(.invalid("\(partition) is in local mode: switch it to raft before changing its members")))
        }
        if let fence {
            // Proposals verified against an earlier one that was not appended must not
            // enter the log without it.
            if node.term != fence.term || fence.epoch <= (r.droppedFenceEpoch ?? 0) && r.droppedFenceEpoch != nil {
                r.droppedFenceEpoch = max(r.droppedFenceEpoch ?? 0, fence.epoch)
                return promise(.failure(.lostLeadership))
            }
        }
        if case .confChange(let change) = payload, change.changes.count > EntryCodec.maximumChanges {
            return promise(.failure(.invalid("a membership change has at most \(EntryCodec.maximumChanges) edits")))
        }
        let outcome: ProposalOutcome
        switch payload {
        case .normal(let data): outcome = node.propose(data)
        case .confChange(let change): outcome = node.proposeConfChange(change)
        }
        r.lastActivityTick = currentTick
        syncResidency(r)
        markDirty(r)
        switch outcome {
        case .appended(let index, let term):
            r.proposals.append(
                PendingProposal(index: index, term: term, deadlineNanoseconds: deadline, promise: promise))
            trackRequests(r)
        case .dropped(.notLeader):
            if let fence { r.droppedFenceEpoch = max(r.droppedFenceEpoch ?? 0, fence.epoch) }
            promise(.failure(notLeader(r, node)))
        case .dropped(let reason):
            if let fence { r.droppedFenceEpoch = max(r.droppedFenceEpoch ?? 0, fence.epoch) }
            promise(.failure(.refused(reason)))
        case .forwarded, .accepted:
            preconditionFailure("a leader's proposal is appended or dropped")
        }
    }

    private func read(
        _ partition: PartitionKey, _ consistency: ReadConsistency, deadline: Int,
        _ promise: @escaping Promise<LogIndex>
    ) {
        let (r, node): (Replica, RawNode)
        switch target(partition) {
        case .failure(let error): return promise(.failure(error))
        case .success(let t): (r, node) = t
        }
        r.lastActivityTick = currentTick
        let id = nextReadID
        nextReadID += 1
        let clock = context.clock.nanoseconds
        if consistency == .lease, node.term == r.leaseTerm, clock < r.leaseUntilNanoseconds,
            let index = node.leaderCommitForRead
        {
            r.reads.append(
                PendingRead(
                    id: id, issuedAtNanoseconds: clock, deadlineNanoseconds: deadline, index: index, promise: promise))
            counters.leaseReads &+= 1
            trackRequests(r)
            var job: ApplyJob?
            releaseReads(r, into: &job)
            if let job {
                r.applyJobsInFlight += 1
                output.applyJobs.append(job)
            }
            return
        }
        if node.role != .leader && node.leader == .none {
            findLeader(r, node)
            return promise(.failure(notLeader(r, node)))
        }
        let readContext = ReadContext(
            nodeSlot: self.context.selfSlot, shard: index, boot: self.context.boot, counter: id)
        switch node.readIndex(context: readContext.bytes) {
        case .accepted, .forwarded:
            r.reads.append(
                PendingRead(
                    id: id, issuedAtNanoseconds: clock, deadlineNanoseconds: deadline, index: nil, promise: promise))
            trackRequests(r)
        case .dropped(.notLeader):
            promise(.failure(notLeader(r, node)))
        case .dropped(let reason):
            promise(.failure(.refused(reason)))
        case .appended:
            preconditionFailure("a read appends nothing")
        }
        syncResidency(r)
        markDirty(r)
    }

    private func transfer(_ partition: PartitionKey, to target: MemberID, _ promise: @escaping Promise<LogIndex>) {
        let (r, node): (Replica, RawNode)
        switch self.target(partition) {
        case .failure(let error): return promise(.failure(error))
        case .success(let t): (r, node) = t
        }
        guard node.role == .leader else { return promise(.failure(notLeader(r, node))) }
        guard r.members.contains(where: { $0.member == target }) else {
            return promise(.failure(.invalid("member \(target) is not in the group")))
        }
        r.lastActivityTick = currentTick
        switch node.transferLeadership(to: target) {
        case .dropped(let reason): promise(.failure(.refused(reason)))
        default:
            // The lease ends with a transfer that starts (before any read of this turn:
            // reads are served on this thread), not with one Raft ignored.
            r.leaseUntilNanoseconds = 0
            promise(.success(node.logBounds.commit))
        }
        syncResidency(r)
        markDirty(r)
    }

    func status(_ partition: PartitionKey) -> Result<ReplicaStatus, HostError> {
        guard let r = replica(for: partition) else { return .failure(.partitionNotFound(partition)) }
        var s = ReplicaStatus(
            replica: r.key, group: r.group, storage: r.storageName, role: .follower, term: .zero, leader: .none,
            commit: .zero, handedToApply: r.handedOut, applied: r.applied, lastIndex: r.stableLog.lastIndex,
            residency: r.residency)
        let conf = r.stableLog.confState
        s.firstIndex = r.stableLog.firstIndex
        s.mode = r.mode
        s.voters = conf.voters
        s.votersOutgoing = conf.votersOutgoing
        s.learners = conf.learners
        for m in r.members {
            if let slot = m.nodeSlot { s.memberNodes[m.member] = context.nodes[slot] }
        }
        s.shardTick = currentTick
        if case .awaitingCampaign = r.state { s.campaignAtTick = r.campaignAtTick }
        if let node = r.node {
            s.role = node.role
            s.term = node.term
            s.leader = node.leader
            s.commit = node.logBounds.commit
            s.lastIndex = node.logBounds.last
            if node.role == .leader {
                s.leaderSinceNanoseconds = r.leaderSinceNanoseconds
                for m in r.members {
                    if let progress = node.progress(of: m.member) { s.matchIndex[m.member] = progress.match }
                }
            }
        } else if let d = r.suspended {
            s.role = d.isLeader ? .leader : .follower
            if d.isLeader { s.leaderSinceNanoseconds = r.leaderSinceNanoseconds }
            s.term = d.term
            s.leader = d.lead
            s.commit = d.commit
        }
        return .success(s)
    }

    // MARK: - Reads

    /// A follower that does not know its leader (after a restart, or after its leader's
    /// node died and nobody took over) starts ticking when a request needs the leader: it
    /// either hears from a live leader (whose in-lease refusal of its pre-vote wakes it,
    /// and it re-announces itself) or, after an election timeout, campaigns. Leaders are
    /// thus found lazily, per group, on first use.
    func findLeader(_ r: Replica, _ node: RawNode) {
        guard node.leader == .none, r.residency != .awake || r.mode == .local, r.residency != .awaitingCampaign
        else { return }
        if node.confState.hasOnlyVoter(r.key.member) {
            // Its group's only voter (a local partition, or a single-member Raft group after
            // a restart): no votes to wait for, so it leads at once rather than after an
            // election timeout.
            startCampaign(r, node)
            return
        }
        node.wake()
        r.lastActivityTick = currentTick
        setAwake(r)
        markDirty(r)
    }

    func readIndexKnown(_ r: Replica, _ node: RawNode, _ state: ReadState) {
        guard let readContext = ReadContext(bytes: state.context), readContext.nodeSlot == context.selfSlot,
            readContext.shard == index, readContext.boot == context.boot
        else { return }
        let id = readContext.counter
        for i in r.reads.indices where r.reads[i].id == id && r.reads[i].index == nil {
            r.reads[i].index = state.index
            if node.role == .leader {
                // A quorum acknowledged a heartbeat sent no earlier than the read's issue time.
                let until =
                    r.reads[i].issuedAtNanoseconds + options.electionTicks * options.tickMilliseconds * 500_000
                if r.leaseTerm != node.term { r.leaseUntilNanoseconds = 0 }
                r.leaseTerm = node.term
                r.leaseUntilNanoseconds = max(r.leaseUntilNanoseconds, until)
            }
            return
        }
    }

    /// Reads whose index has been handed to apply ride on the apply job (or an empty one,
    /// which the apply worker runs after the replica's earlier jobs).
    func releaseReads(_ r: Replica, into job: inout ApplyJob?) {
        guard !r.reads.isEmpty else { return }
        var kept = 0
        for read in r.reads {
            if let index = read.index, index <= r.handedOut {
                if job == nil { job = ApplyJob(target: r.applyTarget, entries: [], through: r.handedOut) }
                job!.reads.append((read.promise, index))
            } else {
                r.reads[kept] = read
                kept += 1
            }
        }
        r.reads.removeLast(r.reads.count - kept)
        trackRequests(r)
    }

    func failUnansweredReads(_ r: Replica, leader: MemberID) {
        guard r.reads.contains(where: { $0.index == nil }) else { return }
        let error = notLeader(r, leader: leader)
        r.reads.removeAll { read in
            guard read.index == nil else { return false }
            read.promise(.failure(error))
            return true
        }
        trackRequests(r)
    }

    /// Answers requests whose deadline passed. A timed-out proposal may still commit.
    func expireRequests() {
        guard !withRequests.isEmpty else { return }
        let clockNanoseconds = context.clock.nanoseconds
        for r in withRequests.values.sorted(by: { ($0.group, $0.storageSlot) < ($1.group, $1.storageSlot) }) {
            r.proposals.removeAll { p in
                guard p.deadlineNanoseconds <= clockNanoseconds else { return false }
                p.promise(.failure(.timedOut))
                return true
            }
            r.reads.removeAll { read in
                guard read.deadlineNanoseconds <= clockNanoseconds else { return false }
                read.promise(.failure(.timedOut))
                return true
            }
            trackRequests(r)
        }
    }

    /// Answers every request with `error` (the host is stopping).
    func failAllRequests(_ error: HostError) {
        for r in withRequests.values {
            for p in r.proposals { p.promise(.failure(error)) }
            for read in r.reads { read.promise(.failure(error)) }
            r.proposals = []
            r.reads = []
        }
        withRequests = [:]
    }
}

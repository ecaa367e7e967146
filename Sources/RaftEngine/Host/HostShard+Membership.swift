import RaftConsensus

/// What a replica knows of its partition's membership, for routing lookups and audits.
public struct RouteView: Sendable, Hashable {
    /// The routing entry (replicas, roles, storages), derived from committed changes.
    public var route: RouteEntry
    /// Every member of the replica's configuration (voters of both majorities, learners).
    public var members: [MemberID]
    /// The leader it knows of (a hint), its term and commit index.
    public var leader: MemberID
    public var term: Term
    public var commit: LogIndex
    /// The replica that answered.
    public var replica: ReplicaKey
    /// On the answering replica: the configuration its log starts from, when known, and
    /// each member's match index when it leads.
    public var initialConf: ConfState? = nil
    public var matchIndex: [MemberID: LogIndex] = [:]
    public var lastIndex: LogIndex = .zero
    /// The index `members` is as of (the answering replica handed out entries through it).
    public var configIndex: LogIndex = .zero
    /// The learners of that configuration.
    public var learners: [MemberID] = []
    /// The answering replica knows its entry misses members (it waits for a peer's).
    public var stale = false

    /// The most partitions one routing lookup between nodes asks about.
    public static let maximumPerRequest = 1024
}

/// Membership changes, routing entries and the retirement of replicas that left their group.
extension HostShard {
    /// Checks a membership edit against the leader's view and proposes it as one
    /// configuration change; `promise` gets its index once committed and applied here.
    /// An added member's ID is the index of the change that adds it (never reused).
    func changeMembership(
        _ partition: PartitionKey, _ edit: MembershipEdit, deadline: Int, _ promise: @escaping Promise<LogIndex>
    ) {
        guard let r = replica(for: partition) else { return promise(.failure(.partitionNotFound(partition))) }
        if let failure = r.failure { return promise(.failure(.replicaFailed(failure))) }
        guard let node = resident(r) else { return promise(.failure(.replicaFailed("replica cannot be rebuilt"))) }
        guard node.role == .leader else {
            let slot = node.leader == .none ? nil : r.nodeSlot(of: node.leader)
            return promise(.failure(.notLeader(leader: node.leader, node: slot.map { context.nodes[$0] })))
        }
        guard r.mode == .raft else {
            return promise(
                .failure(.invalid("\(partition) is in local mode: switch it to raft before changing its members")))
        }
        let conf = node.confState
        if node.hasPendingConfChange {
            return promise(.failure(.membership(.changeInFlight("a change of \(partition) is not applied yet"))))
        }
        if !conf.votersOutgoing.isEmpty {
            return promise(.failure(.membership(.changeInFlight("\(partition) is still in a joint configuration"))))
        }
        switch membershipChange(r, node, conf, edit) {
        case .failure(let error): promise(.failure(error))
        case .success(let change):
            handle(.changeMembership(partition, change, deadlineNanoseconds: deadline, promise))
        }
    }

    private func membershipChange(
        _ r: Replica, _ node: RawNode, _ conf: ConfState, _ edit: MembershipEdit
    ) -> Result<ConfChange, HostError> {
        let all = conf.members
        let last = node.logBounds.last
        switch edit {
        case .addLearner(let storage, let incarnation):
            guard let targetSlot = context.nodeSlot(serving: storage) else {
                return .failure(.membership(.storageUnknown(storage)))
            }
            if let taken = r.route.replicas.first(where: { $0.storage == storage }) {
                return .failure(.membership(.storageTaken(storage, member: taken.member)))
            }
            if let taken = r.route.replicas.first(where: { context.nodeSlot(serving: $0.storage) == targetSlot }) {
                return .failure(.membership(.nodeTaken(storage, member: taken.member)))
            }
            guard r.stableLog.firstIndex > LogIndex(1) || r.initialConf != nil else {
                return .failure(
                    .invalid(
                        "the configuration \(r.key.partition)'s log starts from is not known on this replica; transfer leadership to another replica and retry"
                    ))
            }
            // The new member's ID is the change's index: it must not be an ID the group
            // started with (1, 2, 3… at indices that low). Empty entries move past them.
            let reserved = all.union(r.route.replicas.map(\.member)).union(r.initialConf?.members ?? []).max()
            var next = MemberID(last.next.rawValue)
            while let reserved, next <= reserved {
                guard case .appended = node.propose([]) else {
                    return .failure(.membership(.changeInFlight("the leader takes no entries now")))
                }
                next = MemberID(node.logBounds.last.next.rawValue)
            }
            return .success(
                ConfChange([.addLearner(next)], context: PlacementContext.encode([(next, storage, incarnation)])))
        case .promote(let member, let maxLag):
            guard conf.learners.contains(member) else {
                return .failure(
                    .membership(
                        .memberUnknown(member, all.contains(member) ? "is not a learner" : "is not in the group")))
            }
            if let lag = lag(of: member, node), lag > maxLag {
                return .failure(.membership(.notCaughtUp(member, lag: lag)))
            }
            return .success(ConfChange([.addVoter(member)]))
        case .remove(let member):
            guard all.contains(member) else {
                return .failure(.membership(.memberUnknown(member, "is not in the group")))
            }
            guard member != r.key.member else { return .failure(.membership(.removingLeader(member))) }
            if conf.voters.contains(member) {
                if let refusal = quorumRefusal(r, node, voters: conf.voters.filter { $0 != member }) {
                    return .failure(.membership(refusal))
                }
            }
            return .success(ConfChange([.remove(member)]))
        case .swap(let promoted, let removed, let maxLag):
            guard conf.learners.contains(promoted) else {
                return .failure(.membership(.memberUnknown(promoted, "is not a learner")))
            }
            guard all.contains(removed) else {
                return .failure(.membership(.memberUnknown(removed, "is not in the group")))
            }
            guard removed != r.key.member else { return .failure(.membership(.removingLeader(removed))) }
            if let lag = lag(of: promoted, node), lag > maxLag {
                return .failure(.membership(.notCaughtUp(promoted, lag: lag)))
            }
            let voters = conf.voters.filter { $0 != removed } + [promoted]
            if let refusal = quorumRefusal(r, node, voters: voters) { return .failure(.membership(refusal)) }
            return .success(ConfChange([.addVoter(promoted), .remove(removed)], transition: .jointImplicit))
        }
    }

    /// How far `member` is behind the leader's last index; nil when it is caught up, the
    /// whole log when the leader has not heard from it.
    private func lag(of member: MemberID, _ node: RawNode) -> UInt64? {
        let last = node.logBounds.last.rawValue
        guard let progress = node.progress(of: member), progress.recentActive else { return max(last, 1) }
        let match = progress.match.rawValue
        return match >= last ? nil : last - match
    }

    /// Why a configuration whose voters are `voters` would not have a live majority: the
    /// leader, and members its node hears and whose node is not declared dead, count.
    private func quorumRefusal(_ r: Replica, _ node: RawNode, voters: [MemberID]) -> MembershipRefusal? {
        guard !voters.isEmpty else { return .wouldLoseQuorum("the group would have no voter") }
        var live = 0
        for voter in voters {
            if voter == r.key.member {
                live += 1
                continue
            }
            guard let slot = r.nodeSlot(of: voter), !downNodes.contains(slot) else { continue }
            if node.progress(of: voter)?.recentActive ?? false { live += 1 }
        }
        let majority = voters.count / 2 + 1
        guard live >= majority else {
            return .wouldLoseQuorum(
                "\(live) of the \(voters.count) voters it would have are live, \(majority) are needed; bring members back first"
            )
        }
        return nil
    }

    // MARK: - Routing entries

    /// What this node's replica of `partition` knows of its membership.
    package func routeView(_ partition: PartitionKey) -> RouteView? {
        guard let r = replica(for: partition), r.retirePending == nil else { return nil }
        let conf = r.node?.confState ?? r.stableLog.confState
        var view = RouteView(
            route: r.route, members: conf.members.sorted(), leader: .none, term: .zero, commit: .zero,
            replica: r.key)
        view.initialConf = r.initialConf
        view.lastIndex = r.stableLog.lastIndex
        view.configIndex = r.handedOut
        view.learners = (conf.learners + conf.learnersNext).sorted()
        view.stale = r.routeStale
        if let node = r.node {
            view.leader = node.leader
            view.term = node.term
            view.commit = node.logBounds.commit
            view.lastIndex = node.logBounds.last
            if node.role == .leader {
                for m in view.members {
                    if let progress = node.progress(of: m) { view.matchIndex[m] = progress.match }
                }
            }
        } else if let d = r.suspended {
            view.leader = d.lead
            view.term = d.term
            view.commit = d.commit
        }
        return view
    }

    /// A peer's view of the partition, newer than this replica's entry: adopted (members
    /// get their nodes). When neither it nor the peer's configuration names this replica,
    /// and that configuration is at least as new as this member (member IDs are the index
    /// of the change that added them, so a configuration older than the ID has not seen
    /// the member yet), a committed change removed it while it was away: it retires.
    func adopt(_ view: RouteView) {
        for r in replicas[view.replica.partition] ?? [] where r.retirePending == nil {
            let newer = r.route.version < view.route.version
            // A replica whose entry is incomplete takes a complete one of the same version.
            guard newer || (r.routeStale && !view.stale && r.route.version == view.route.version) else { continue }
            let named = view.route.replicas.contains { $0.member == r.key.member && $0.storage == r.storageName }
            if !named {
                if newer && !view.stale && !view.members.contains(r.key.member)
                    && view.configIndex.rawValue >= r.key.member.rawValue
                    && view.configIndex >= view.route.version.index
                {
                    retire(r, "the routing entry at \(view.route.version) no longer names it")
                }
                continue
            }
            guard r.route.version <= view.route.version else { continue }
            r.route = view.route
            r.routeStale = view.stale
            updateMembers(r, r.node?.confState ?? r.stableLog.confState)
            appliedUpdates[r.storageSlot][r.group, default: AppliedUpdate(index: r.applied, confState: nil)].route =
                view.route
        }
    }

    // MARK: - Retirement

    /// Stops a replica that left its group: requests fail, nothing more is stepped or
    /// recorded; the host deletes its data once no apply job of it is in flight.
    func retire(_ r: Replica, _ reason: String) {
        guard r.retirePending == nil else { return }
        r.retirePending = reason
        fail(r, "left its group: \(reason)")
        appliedUpdates[r.storageSlot][r.group] = nil
        if r.applyJobsInFlight == 0 { handOverRetired(r) }
    }

    func handOverRetired(_ r: Replica) {
        output.retired.append(
            RetiredReplica(
                key: r.key, group: r.group, storageSlot: r.storageSlot, stateMachine: r.stateMachine,
                reason: r.retirePending ?? ""))
    }

    /// Forgets a retired replica whose data the host deleted: the partition can be hosted
    /// here again (as a new member).
    package func forget(_ key: ReplicaKey) {
        guard var list = replicas[key.partition] else { return }
        list.removeAll { $0.key == key && $0.retirePending != nil }
        counters.replicas -= (replicas[key.partition]!.count - list.count)
        replicas[key.partition] = list.isEmpty ? nil : list
    }
}

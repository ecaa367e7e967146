import RaftConsensus
import RaftEngine

/// Membership changes during faults, and the check of what every member applied:
/// learners added on a free node and joined, promoted,
/// swapped in for a voter by joint consensus, members removed; removed replicas retire.
extension HostSimulator {
    /// The node whose replica leads `key`, with that replica's view.
    func leaderView(_ key: PartitionKey) -> (node: Int, view: RouteView)? {
        for (i, node) in nodes.enumerated() {
            guard let node, let r = node.shard.replica(for: key), r.node?.role == .leader,
                let view = node.shard.routeView(key)
            else { continue }
            return (i, view)
        }
        return nil
    }

    func changeMembership() {
        let key = pickKey()
        guard let (leader, view) = leaderView(key), let node = nodes[leader] else { return }
        let learners = view.route.replicas.filter { $0.role == .learner }.map(\.member)
        let voters = view.route.replicas.filter { $0.role == .voter && $0.member != view.replica.member }.map(\.member)
        let used = Set(view.route.replicas.map(\.storage))
        let free = names.indices.filter { !used.contains(names[$0]) }
        let edit: MembershipEdit
        if let learner = learners.first, membership.pendingJoins.allSatisfy({ $0.member != learner }) {
            if rng.next(below: 2) == 0 || voters.isEmpty {
                edit = .promote(learner, maxLag: 8)
            } else {
                edit = .swap(promote: learner, remove: voters[rng.next(below: voters.count)], maxLag: 8)
            }
        } else if !free.isEmpty && learners.isEmpty {
            // The simulated storages never leave: their incarnation is the first one.
            edit = .addLearner(names[free[rng.next(below: free.count)]], .first)
        } else if let learner = learners.first {
            edit = .remove(learner)
        } else if !voters.isEmpty && view.route.replicas.count > 2 {
            edit = .remove(voters[rng.next(below: voters.count)])
        } else {
            return
        }
        note("node \(leader): membership \(edit) of \(key) at \(view.route.version)")
        let storageOfAdded: Int? = {
            if case .addLearner(let storage, _) = edit { return names.firstIndex(of: storage) }
            return nil
        }()
        let membership = self.membership
        let now = step
        node.shard.handle(
            .membership(key, edit, deadlineNanoseconds: deadline) { result in
                guard case .success(let index) = result else { return }
                membership.changes += 1
                if let target = storageOfAdded {
                    membership.pendingJoins.append((key, MemberID(index.rawValue), target, now))
                }
            })
    }

    /// Creates the replicas of learners whose change committed, on their node (the join),
    /// with the leader's current routing entry; a node that is down gets it when it is back
    /// (long after, the learner is removed instead: the rollback of a failed join).
    func joinPending() {
        var kept: [(key: PartitionKey, member: MemberID, node: Int, since: Int)] = []
        for join in membership.pendingJoins {
            guard let target = nodes[join.node], let (leader, view) = leaderView(join.key) else {
                if step - join.since > 400 { rollBack(join.key, join.member) } else { kept.append(join) }
                continue
            }
            guard view.route.replicas.contains(where: { $0.member == join.member }) else { continue }  // removed
            if let existing = target.shard.replica(for: join.key) {
                if existing.key.member != join.member {
                    // A replica removed while its node was away: retired first (as the
                    // join call makes it), then the join is tried again.
                    target.shard.handle(.adoptRoutes([view]) {})
                    kept.append(join)
                }
                continue
            }
            guard let start = view.initialConf else {
                kept.append(join)
                continue
            }
            do {
                let stored = try StoredConfState(start)
                let records = try target.storage.metadata.createRaftReplicas([
                    MetadataStore.NewReplica(key: join.key, route: view.route, confState: stored)
                ])
                let (_, f) = factory(for: target, storage: target.storage, slot: join.node)
                let r = try f.makeReplica(
                    key: ReplicaKey(partition: join.key, member: join.member), group: records[0].group, storageSlot: 0,
                    route: view.route.replicas, confState: start, applied: .zero, routeVersion: view.route.version,
                    initialConf: start)
                target.shard.add(r, campaign: false)
                joins += 1
                note("node \(join.node): joined \(join.key) as member \(join.member) (leader on node \(leader))")
            } catch {
                // Registered already (an earlier join of this member): nothing to do.
                note("node \(join.node): join of \(join.key) member \(join.member) refused: \(error)")
            }
        }
        membership.pendingJoins = kept
    }

    /// What `NodeHost.auditRoutes` does: replicas that know no leader compare their entry
    /// with the newest one their live, reachable peers hold (newer ones are adopted, or the
    /// replica retires); leaders redo the joins of members that never answered.
    func auditRoutes() {
        for (i, node) in nodes.enumerated() {
            guard let node else { continue }
            for key in keys {
                guard let mine = node.shard.routeView(key) else { continue }
                if mine.leader == mine.replica.member {
                    for replica in mine.route.replicas
                    where replica.role == .learner && (mine.matchIndex[replica.member] ?? .zero) == .zero {
                        guard let target = names.firstIndex(of: replica.storage), target != i,
                            !membership.pendingJoins.contains(where: { $0.key == key && $0.member == replica.member })
                        else { continue }
                        membership.pendingJoins.append((key, replica.member, target, step))
                    }
                    continue
                }
                guard mine.leader == .none || mine.stale || step % 300 == 0 else { continue }
                var newest: RouteView?
                for (j, peer) in nodes.enumerated() where j != i && !cut.contains([j, i]) {
                    guard let view = peer?.shard.routeView(key),
                        mine.route.version < view.route.version || (mine.stale && !view.stale)
                    else { continue }
                    if newest == nil || newest!.route.version < view.route.version { newest = view }
                }
                if let newest { node.shard.handle(.adoptRoutes([newest]) {}) }
            }
        }
    }

    private func rollBack(_ key: PartitionKey, _ member: MemberID) {
        guard let (leader, _) = leaderView(key), let node = nodes[leader] else { return }
        note("rolling back learner \(member) of \(key)")
        node.shard.handle(.membership(key, .remove(member), deadlineNanoseconds: deadline) { _ in })
    }

    /// The members of `key` as the replica with the newest routing entry sees them, each
    /// with the node of its storage.
    func finalMembers(_ key: PartitionKey) -> [(node: Int, member: MemberID)]? {
        var best: RouteView?
        for node in nodes {
            guard let view = node?.shard.routeView(key) else { continue }
            if best == nil || best!.route.version < view.route.version { best = view }
        }
        guard let best else { return nil }
        return best.route.replicas.compactMap { replica in
            names.firstIndex(of: replica.storage).map { ($0, replica.member) }
        }
    }

    /// State machine safety: replicas never apply different entries at one index; at the
    /// end, every acknowledged write is applied by every member of its group's newest
    /// configuration.
    func checkApplied(final: Bool) -> String? {
        for key in keys {
            var seen: [LogIndex: [UInt8]] = [:]
            let all = machines.machines(of: key)
            for (node, replica, sm) in all {
                if let v = sm.violations.first { return "\(key) \(replica) on node \(node): \(v)" }
                for w in sm.writes {
                    if let other = seen[w.index], other != w.data {
                        return "\(key): replicas applied different entries at \(w.index)"
                    }
                    seen[w.index] = w.data
                }
            }
            if final {
                guard let members = finalMembers(key) else { return "\(key): no replica knows its members" }
                for a in outcomes.acked where a.key == key {
                    for (node, member) in members {
                        guard
                            let sm = machines.existing(node: node, replica: ReplicaKey(partition: key, member: member)),
                            sm.writes.contains(where: { $0.index == a.index && $0.data == a.data })
                        else {
                            return
                                "\(key): acknowledged write at \(a.index) is not applied by member \(member) on node \(node)"
                        }
                    }
                }
            }
        }
        return nil
    }
}

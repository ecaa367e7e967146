import Logging
import RaftConsensus

/// Membership changes as whole operations: each call checks, proposes, waits for the commit
/// (with a deadline) and reports the outcome; an addition creates the new replica on its
/// storage's node (the join) and is rolled back when that fails. Only the partition's
/// leader takes them (others answer `notLeader`), one change in flight per partition.
extension NodeHost {
    /// A learner is promoted (or swapped in) only when it lags the leader by at most this.
    public static let defaultPromotionLag: UInt64 = 64

    func proposeMembership(
        _ partition: PartitionKey, _ edit: MembershipEdit, timeoutTicks: Int?
    ) async throws(HostError) -> LogIndex {
        try await awaiting { completion in
            submit(partition, completion, timeoutTicks: timeoutTicks) {
                .membership(partition, edit, deadlineNanoseconds: $0, $1)
            }
        }
    }

    /// Adds a read-only member (learner) on `storage`: proposes the change (the new member's
    /// ID is its index), waits for it to commit, then creates the replica on the storage's
    /// node with the partition's current routing entry. It catches up by log or snapshot.
    /// A failed creation removes the member again and throws.
    public func addLearner(
        _ partition: PartitionKey, on storage: StorageName, timeoutTicks: Int? = nil
    ) async throws(HostError) -> MembershipResult {
        let incarnation = try await incarnation(of: storage, fresh: true)
        let index = try await proposeMembership(
            partition, .addLearner(storage, incarnation), timeoutTicks: timeoutTicks)
        let member = MemberID(index.rawValue)
        do throws(HostError) {
            guard let view = await routeViews([partition]).first else { throw .partitionNotFound(partition) }
            guard view.route.replicas.contains(where: { $0.member == member && $0.storage == storage }) else {
                throw .invalid("the committed change at \(index) does not name member \(member) on \(storage)")
            }
            // A node that still holds a replica of the partition removed while it was away
            // refuses until that one is retired: retried for a while.
            var attempt = 0
            while true {
                do {
                    try await join(partition, member: member, storage: storage, view: view)
                    break
                } catch {
                    attempt += 1
                    guard attempt < 20, !stopped.load(ordering: .relaxed) else { throw error }
                    try? await Task.sleep(nanoseconds: 250_000_000)
                }
            }
            logger.notice(
                "added learner \(member) of \(partition) on \(storage)",
                metadata: ["index": "\(index)", "route": "\(view.route.version)"])
            return MembershipResult(index: index, member: member, route: view.route)
        } catch {
            logger.warning("creating learner \(member) of \(partition) on \(storage) failed: \(error); removing it")
            await rollBack(partition, member)
            throw error
        }
    }

    /// Creates the replica of `member` on `storage` (this node's or a peer's) with the
    /// routing entry and start configuration of `view` (the leader's). Idempotent: a
    /// replica that exists with this member is left as it is.
    func join(
        _ partition: PartitionKey, member: MemberID, storage: StorageName, view: RouteView
    ) async throws(HostError) {
        guard let start = view.initialConf else {
            throw .invalid("the configuration the log of \(partition) starts from is not known here")
        }
        var spec = ReplicaSpec(partition: partition, member: member, storage: storage, replicas: view.route.replicas)
        spec.routeVersion = view.route.version
        spec.startConf = start
        if context.storageNames.contains(storage) {
            if let status = try? await status(of: partition) {
                guard status.replica.member == member else {
                    throw .invalid("\(partition) has member \(status.replica.member) here, not \(member)")
                }
                return
            }
            try createReplicas([spec])
        } else {
            try await createReplicaOnPeer(spec)
        }
    }

    /// Creates the replicas of learners that a committed change added but whose replica
    /// never answered (the leader that added them failed before the join, or the join's
    /// answer was lost): run by the leader during audits. Joins are idempotent. Never a
    /// voter's: a voter whose replica lost its data must not come back empty (it could
    /// help elect a leader without committed entries); the operator replaces it.
    func reconcileJoins(_ views: [RouteView]) async {
        for view in views where view.leader == view.replica.member && !view.stale {
            // Learners of the leader's live configuration, not of its entry's roles.
            for replica in view.route.replicas
            where replica.member != view.replica.member && view.learners.contains(replica.member) {
                guard (view.matchIndex[replica.member] ?? .zero) == .zero else { continue }
                do {
                    try await join(view.replica.partition, member: replica.member, storage: replica.storage, view: view)
                } catch {
                    logger.info(
                        "joining member \(replica.member) of \(view.replica.partition) on \(replica.storage): \(error)")
                }
            }
        }
    }

    /// The current incarnation of `storage` (this node's, or asked of its node; `fresh`:
    /// not from the cache of earlier answers, which a refused creation clears).
    public func incarnation(of storage: StorageName, fresh: Bool = false) async throws(HostError) -> StorageIncarnation
    {
        if let slot = context.storageNames.firstIndex(of: storage) {
            return storages[slot].metadata.identity.incarnation
        }
        if !fresh, let known = knownIncarnations.withLock({ $0[storage] }) { return known }
        guard let node = cluster.node(serving: storage) else { throw .membership(.storageUnknown(storage)) }
        let response: BulkResponse
        do { response = try await bulkRequest(.storageIncarnation(storage), to: node) } catch {
            throw .unreachable("asking node \(node) for the incarnation of \(storage): \(error)")
        }
        guard case .data(let bytes) = response, bytes.count == 8,
            let incarnation = try? StorageIncarnation(bytes.reduce(0) { $0 << 8 | UInt64($1) })
        else { throw .invalid("node \(node) answered the incarnation of \(storage) with \(response)") }
        knownIncarnations.withLock { $0[storage] = incarnation }
        return incarnation
    }

    /// Removes a member whose replica could not be created; retried while another change
    /// is applied. Best effort: a failure is logged (the operator removes it).
    private func rollBack(_ partition: PartitionKey, _ member: MemberID) async {
        for attempt in 0..<20 {
            do {
                _ = try await proposeMembership(partition, .remove(member), timeoutTicks: nil)
                return
            } catch {
                if case .membership(.changeInFlight) = error, attempt < 19 {
                    try? await Task.sleep(nanoseconds: 50_000_000)
                    continue
                }
                logger.error(
                    "rolling back member \(member) of \(partition) failed: \(error); remove it with raftd partition remove-replica"
                )
                return
            }
        }
    }

    /// Makes the learner `member` a voter. Refused (`notCaughtUp`, with the lag) while it
    /// lags by more than `maxLag` entries.
    public func promote(
        _ partition: PartitionKey, member: MemberID, maxLag: UInt64 = NodeHost.defaultPromotionLag,
        timeoutTicks: Int? = nil
    ) async throws(HostError) -> MembershipResult {
        let index = try await proposeMembership(partition, .promote(member, maxLag: maxLag), timeoutTicks: timeoutTicks)
        return MembershipResult(index: index, member: member, route: await routeViews([partition]).first?.route)
    }

    /// Removes `member` (voter or learner). Its replica stops when it applies the change,
    /// or learns of it from a peer's newer routing entry, and deletes its data.
    public func removeMember(
        _ partition: PartitionKey, member: MemberID, timeoutTicks: Int? = nil
    ) async throws(HostError) -> MembershipResult {
        let index = try await proposeMembership(partition, .remove(member), timeoutTicks: timeoutTicks)
        return MembershipResult(index: index, member: member, route: await routeViews([partition]).first?.route)
    }

    /// Replaces `member` with a new replica on `storage`: adds a learner there, waits (up to
    /// `catchUpMilliseconds`) until it is caught up, then makes it a voter and removes
    /// `member` in one joint change (left automatically). `progress` hears each step.
    public func replaceMember(
        _ partition: PartitionKey, member: MemberID, with storage: StorageName,
        catchUpMilliseconds: Int = 120_000, progress: @Sendable (String) -> Void = { _ in }
    ) async throws(HostError) -> MembershipResult {
        guard let view = await routeViews([partition]).first else { throw .partitionNotFound(partition) }
        guard view.members.contains(member) else {
            throw .membership(.memberUnknown(member, "is not in the group"))
        }
        let added = try await addLearner(partition, on: storage)
        guard let new = added.member else { throw .invalid("the addition named no member") }
        progress("added learner \(new) on \(storage) at index \(added.index); catching up")
        try await waitCaughtUp(
            partition, member: new, maxLag: Self.defaultPromotionLag, milliseconds: catchUpMilliseconds)
        progress("learner \(new) is caught up; swapping it in for member \(member)")
        var last: HostError = .timedOut
        for _ in 0..<40 {
            do {
                let index = try await proposeMembership(
                    partition, .swap(promote: new, remove: member, maxLag: Self.defaultPromotionLag), timeoutTicks: nil)
                try await waitLeftJoint(partition, milliseconds: 10_000)
                progress("member \(new) votes and member \(member) left (joint change at \(index))")
                return MembershipResult(index: index, member: new, route: await routeViews([partition]).first?.route)
            } catch {
                last = error
                // The learner fell behind again, or the addition is still being applied.
                guard case .membership(let refusal) = error, refusal.isRetryable else { throw error }
                try? await Task.sleep(nanoseconds: 100_000_000)
            }
        }
        throw last
    }

    /// Waits until the leader (this node's replica) sees `member` within `maxLag` entries.
    public func waitCaughtUp(
        _ partition: PartitionKey, member: MemberID, maxLag: UInt64, milliseconds: Int
    ) async throws(HostError) {
        let deadline = clock.nanoseconds + milliseconds * 1_000_000
        while true {
            let status = try await status(of: partition)
            guard status.role == .leader else { throw .notLeader(leader: status.leader, node: nil) }
            let match = status.matchIndex[member]?.rawValue ?? 0
            let lag = status.lastIndex.rawValue > match ? status.lastIndex.rawValue - match : 0
            if status.matchIndex[member] != nil && lag <= maxLag { return }
            guard clock.nanoseconds < deadline else { throw .membership(.notCaughtUp(member, lag: lag)) }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Waits until this node's replica is out of a joint configuration.
    func waitLeftJoint(_ partition: PartitionKey, milliseconds: Int) async throws(HostError) {
        let deadline = clock.nanoseconds + milliseconds * 1_000_000
        while try await !status(of: partition).votersOutgoing.isEmpty {
            guard clock.nanoseconds < deadline else { throw .timedOut }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    /// Hands leadership to `member` and waits (up to `milliseconds`) until it leads, as
    /// this node's replica sees it.
    public func transferLeadership(
        _ partition: PartitionKey, to member: MemberID, waitMilliseconds milliseconds: Int
    ) async throws(HostError) {
        try await transferLeadership(partition, to: member)
        let deadline = clock.nanoseconds + milliseconds * 1_000_000
        while true {
            let status = try await status(of: partition)
            if status.leader == member && (status.replica.member == member || status.role != .leader) { return }
            guard clock.nanoseconds < deadline else {
                throw .unreachable("member \(member) of \(partition) did not take over within \(milliseconds) ms")
            }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    // MARK: - Replica creation on peers

    /// A peer's request to create this node's replica of a partition it minted.
    func createReplica(_ spec: ReplicaSpec, for node: NodeID) async -> BulkResponse {
        // The node that minted the partition creates its first members; later members are
        // created by the leader that added them (a join, with the current routing entry).
        guard cluster.node(serving: spec.partition.authority) == node || spec.routeVersion.index > .zero else {
            return .refused(
                "node \(node) does not serve storage \(spec.partition.authority), the authority of \(spec.partition)")
        }
        guard context.storageNames.contains(spec.storage) else {
            return .refused("storage \(spec.storage) is not served by node \(nodeID)")
        }
        for replica in spec.replicas where cluster.node(serving: replica.storage) == nil {
            return .refused(
                "member \(replica.member) is on storage \(replica.storage), which the cluster does not know")
        }
        if let status = try? await status(of: spec.partition) {
            if status.replica.member == spec.member { return .stored }
            // Perhaps a replica removed while this node was away: its peers' entries and
            // configurations (never the asking node's word alone) decide; if they show the
            // removal, it retires and the joiner's retry succeeds.
            await auditPartition(spec.partition)
            return .refused(
                "\(spec.partition) has member \(status.replica.member) here, not \(spec.member) (a removed replica is retired first; retry)"
            )
        }
        var spec = spec
        spec.campaign = false
        do {
            try createReplicas([spec])
            return .stored
        } catch {
            return .refused("\(error)")
        }
    }

    /// Creates `spec` (a replica of a partition this node minted) on the node serving its
    /// storage, and waits for it to be registered there.
    public func createReplicaOnPeer(_ spec: ReplicaSpec) async throws(HostError) {
        guard let node = cluster.node(serving: spec.storage), node != nodeID else {
            throw .invalid("storage \(spec.storage) is not a peer's storage")
        }
        let response: BulkResponse
        do {
            response = try await bulkRequest(.createReplica(spec), to: node)
        } catch {
            throw .unreachable("creating replica \(spec.member) of \(spec.partition) on node \(node): \(error)")
        }
        switch response {
        case .stored: return
        case .refused(let reason):
            // Perhaps for an incarnation of the storage that moved on: asked again next time.
            _ = knownIncarnations.withLock { $0.removeValue(forKey: spec.storage) }
            throw .invalid("node \(node) refused replica \(spec.member) of \(spec.partition): \(reason)")
        case .data: throw .invalid("node \(node) answered a replica creation with data")
        }
    }

    // MARK: - Routing entries

    /// What this node's replicas know of the partitions' membership (hosted ones only).
    public func routeViews(_ partitions: [PartitionKey]) async -> [RouteView] {
        var byWorker: [Int: [PartitionKey]] = [:]
        for key in partitions { byWorker[shardIndex(key), default: []].append(key) }
        var out: [RouteView] = []
        for (worker, keys) in byWorker {
            let views: [RouteView] = await withCheckedContinuation { continuation in
                let ok = workers[worker].offer(.request(.routeViews(keys) { continuation.resume(returning: $0) }))
                if !ok { continuation.resume(returning: []) }
            }
            out += views
        }
        return out
    }

    /// The newest view of `partition` this node can find: its own replica's, and the
    /// views of the nodes its entry names (or of every peer, when it hosts none). Nil when
    /// no node answered with one.
    public func lookupRoute(_ partition: PartitionKey) async -> RouteView? {
        var best = await routeViews([partition]).first
        let asked = best.map { self.nodes(of: $0.route) } ?? cluster.nodes.filter { $0 != nodeID }
        for node in asked {
            guard let views = try? await peerRouteViews([partition], at: node), let view = views.first else {
                continue
            }
            if best == nil || best!.route.version < view.route.version
                || (best!.route.version == view.route.version && best!.leader == .none)
            {
                best = view
            }
        }
        return best
    }

    private func nodes(of route: RouteEntry) -> [NodeID] {
        Set(route.replicas.compactMap { cluster.node(serving: $0.storage) }).filter { $0 != nodeID }.sorted()
    }

    /// A peer's views of `partitions` (those it hosts).
    func peerRouteViews(
        _ partitions: [PartitionKey], paths: [RelativePath] = [], at node: NodeID
    ) async throws(HostError) -> [RouteView] {
        guard !partitions.isEmpty || !paths.isEmpty else { return [] }
        let response: BulkResponse
        do {
            response = try await bulkRequest(.routes(keys: partitions, paths: paths), to: node)
        } catch {
            throw .unreachable("asking node \(node) for routing entries: \(error)")
        }
        switch response {
        case .data(let bytes):
            do { return try PeerWire.decodeRouteViews(bytes) } catch {
                throw .invalid("node \(node) answered routing entries that do not decode: \(error)")
            }
        case .refused(let reason): throw .invalid("node \(node) refused a routing lookup: \(reason)")
        case .stored: throw .invalid("node \(node) answered a routing lookup with no data")
        }
    }

    /// Serves a peer's routing lookup from this node's replicas.
    func serveRoutes(_ partitions: [PartitionKey], paths: [RelativePath]) async -> BulkResponse {
        guard partitions.count <= RouteView.maximumPerRequest else {
            return .refused("\(partitions.count) partitions in one lookup, more than \(RouteView.maximumPerRequest)")
        }
        var keys = partitions
        for path in paths {
            for storage in storages {
                if let key = try? storage.metadata.partitionKey(for: path), !keys.contains(key) { keys.append(key) }
            }
        }
        return .data(PeerWire.encode(await routeViews(keys)))
    }

    /// The partition holding the repository at `path`, with the newest view any peer has
    /// of it (this node hosts no replica of it): nil when no reachable node knows it.
    public func lookupRoute(path: RelativePath) async -> RouteView? {
        var best: RouteView?
        for node in cluster.nodes where node != nodeID {
            guard let views = try? await peerRouteViews([], paths: [path], at: node), let view = views.first else {
                continue
            }
            if best == nil || best!.route.version < view.route.version
                || (best!.route.version == view.route.version && best!.leader == .none)
            {
                best = view
            }
        }
        return best
    }

    /// Compares this node's replicas' routing entries with their peers' and adopts newer
    /// ones; a replica that a newer entry no longer names (removed while its node was
    /// away) retires and its data is deleted. `onlyUnled`: only replicas that know no
    /// leader (all of them right after a start). Returns how many replicas were compared.
    @discardableResult
    public func auditRoutes(onlyUnled: Bool = true) async -> Int {
        var local: [RouteView] = []
        for worker in workers.indices {
            let views: [RouteView] = await withCheckedContinuation { continuation in
                let ok = workers[worker].offer(
                    .call { shard in
                        var out: [RouteView] = []
                        for (key, list) in shard.replicas where list.count == 1 && list[0].mode == .raft {
                            guard let view = shard.routeView(key) else { continue }
                            // Leaders with a member that never answered: joins to redo.
                            let silent =
                                view.leader == view.replica.member
                                && view.learners.contains { (view.matchIndex[$0] ?? .zero) == .zero }
                            if onlyUnled && view.leader != .none && !silent && !view.stale { continue }
                            out.append(view)
                        }
                        continuation.resume(returning: out)
                    })
                if !ok { continuation.resume(returning: []) }
            }
            local += views
        }
        let led = local.filter { $0.leader == $0.replica.member }
        var byNode: [NodeID: [PartitionKey]] = [:]
        // A leader compares its entry too when it knows it is incomplete (a snapshot covered
        // a change): it cannot retire (it is in its configuration), only adopt.
        for view in local where view.leader != view.replica.member || view.stale {
            // A group whose only voter is this replica has nobody to ask.
            for node in nodes(of: view.route) { byNode[node, default: []].append(view.replica.partition) }
        }
        await reconcileJoins(led)
        var newer: [PartitionKey: RouteView] = [:]
        for (node, keys) in byNode {
            var start = 0
            while start < keys.count {
                let chunk = Array(keys[start..<min(start + RouteView.maximumPerRequest, keys.count)])
                start += chunk.count
                guard let views = try? await peerRouteViews(chunk, at: node) else { break }
                for view in views
                where newer[view.replica.partition].map({ $0.route.version < view.route.version }) ?? true {
                    newer[view.replica.partition] = view
                }
            }
        }
        var byWorker: [Int: [RouteView]] = [:]
        for view in newer.values { byWorker[shardIndex(view.replica.partition), default: []].append(view) }
        for (worker, views) in byWorker {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ok = workers[worker].offer(.request(.adoptRoutes(views) { continuation.resume() }))
                if !ok { continuation.resume() }
            }
        }
        return local.count
    }

    /// Compares this node's replica of `partition` with every peer's view of it (as the
    /// audit does for many), adopting a newer entry or retiring a replica it shows removed.
    func auditPartition(_ partition: PartitionKey) async {
        var newest: RouteView?
        for node in cluster.nodes where node != nodeID {
            guard let views = try? await peerRouteViews([partition], at: node), let view = views.first else { continue }
            if newest.map({ $0.route.version < view.route.version }) ?? true { newest = view }
        }
        guard let newest else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ok = workers[shardIndex(partition)].offer(.request(.adoptRoutes([newest]) { continuation.resume() }))
            if !ok { continuation.resume() }
        }
    }

    // MARK: - Retired replicas

    /// Deletes the data of a replica that left its group: recorded as leaving first (a
    /// restart finishes the deletion), then its repositories and directory, its log, and
    /// its registration. Runs on the retirer thread.
    func deleteRetired(_ item: RetiredReplica) {
        // From here on a WAL unit parked by a full disk and submitted again leaves this
        // group's writes out (`appendWrites`): its removal is not undone.
        retiredGroups.withLock { retired in
            if retired.count < storages.count { retired += Array(repeating: [], count: storages.count - retired.count) }
            retired[item.storageSlot].insert(item.group)
        }
        let storage = storages[item.storageSlot]
        do {
            try item.deleteData(in: storage)
            retiredCount.wrappingAdd(1, ordering: .relaxed)
            logger.notice(
                "replica \(item.key) left its group and its data on \(context.storageNames[item.storageSlot]) was deleted",
                metadata: ["reason": "\(item.reason)"])
        } catch {
            logger.error(
                "deleting the data of the removed replica \(item.key) on \(context.storageNames[item.storageSlot]) failed: \(error); it is retried at the next start"
            )
        }
        workers[shardIndex(item.key.partition)].post(.call { shard in shard.forget(item.key) })
    }
}

extension RetiredReplica {
    /// Deletes what `storage` holds of this replica: recorded as leaving first (a restart
    /// finishes the deletion), then its state machine's data, its log, and its
    /// registration. Idempotent.
    package func deleteData(in storage: Storage) throws {
        let key = self.key.partition
        if let record = try storage.metadata.partition(key), record.state == .active {
            try storage.metadata.updateReplicaState(.leaving, of: key)
        }
        try stateMachine.removeAllData()
        try storage.log.removeGroup(group)
        if try storage.metadata.partition(key) != nil {
            try storage.metadata.removePartition(key, from: [.leaving, .tombstoned])
        }
    }
}

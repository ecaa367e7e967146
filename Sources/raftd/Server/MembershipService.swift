import Foundation
import GRPCCore
import RaftAPI
import RaftConsensus
import RaftEngine

/// The membership RPCs of `ClusterService` (docs/MEMBERSHIP.md): each runs on the
/// partition's leader; a node that does not lead answers NOT_LEADER with the leader's
/// address (found through its peers when it hosts no replica).
extension ClusterServiceImpl {
    func addReplica(
        request: Raftd_V1_AddReplicaRequest, context: ServerContext
    ) async throws -> Raftd_V1_MembershipResponse {
        try await unary(counters, "AddReplica") { () async throws(APIFailure) in
            let key = try partitionKey(request.partitionKey)
            try await requireLeader(key)
            var steps: [String] = []
            let storage = try await chooseStorage(request.storage, for: key, steps: &steps)
            let timeout = milliseconds(request.timeoutMs)
            let result = try await host { () async throws(HostError) in
                try await server.host.addLearner(key, on: storage)
            }
            guard let member = result.member else { throw APIFailure(APIErrors.invalid("no member was added")) }
            steps.append("added learner \(member) on \(storage) at LSN \(result.index)")
            if request.waitCaughtUp {
                try await host { () async throws(HostError) in
                    try await server.host.waitCaughtUp(
                        key, member: member, maxLag: NodeHost.defaultPromotionLag, milliseconds: timeout)
                }
                steps.append("learner \(member) caught up")
            }
            return try await response(key, lsn: result.index, member: member, steps: steps)
        }
    }

    func promoteReplica(
        request: Raftd_V1_PromoteReplicaRequest, context: ServerContext
    ) async throws -> Raftd_V1_MembershipResponse {
        try await unary(counters, "PromoteReplica") { () async throws(APIFailure) in
            let key = try partitionKey(request.partitionKey)
            try await requireLeader(key)
            let member = MemberID(request.memberID)
            let lag = request.maxLag == 0 ? NodeHost.defaultPromotionLag : request.maxLag
            var steps: [String] = []
            if request.timeoutMs > 0 {
                // Wait for the learner first; a timeout is answered by the promotion's own
                // refusal below, with the lag in it.
                if (try? await server.host.waitCaughtUp(
                    key, member: member, maxLag: lag, milliseconds: milliseconds(request.timeoutMs))) != nil
                {
                    steps.append("learner \(member) caught up")
                }
            }
            let result = try await host { () async throws(HostError) in
                try await server.host.promote(key, member: member, maxLag: lag)
            }
            steps.append("member \(member) votes from LSN \(result.index)")
            return try await response(key, lsn: result.index, member: member, steps: steps)
        }
    }

    func removeReplica(
        request: Raftd_V1_RemoveReplicaRequest, context: ServerContext
    ) async throws -> Raftd_V1_MembershipResponse {
        try await unary(counters, "RemoveReplica") { () async throws(APIFailure) in
            let key = try partitionKey(request.partitionKey)
            let status = try await requireLeader(key)
            let member = MemberID(request.memberID)
            if member == status.replica.member {
                // The leader's own replica: hand leadership to the most caught-up other
                // voter, then let the client ask the new leader (NOT_LEADER names it).
                let target = try await successor(key, status)
                try await host { () async throws(HostError) in
                    try await server.host.transferLeadership(key, to: target, waitMilliseconds: 10_000)
                }
                var failure = operations.errors.error(
                    HostError.notLeader(leader: target, node: status.memberNodes[target]))
                failure.message =
                    "member \(member) led \(key): leadership went to member \(target); retry there to remove it"
                throw APIFailure(failure)
            }
            let result = try await host { () async throws(HostError) in
                try await server.host.removeMember(key, member: member)
            }
            return try await response(
                key, lsn: result.index, member: member, steps: ["member \(member) removed at LSN \(result.index)"])
        }
    }

    func replaceReplica(
        request: Raftd_V1_ReplaceReplicaRequest, context: ServerContext
    ) async throws -> Raftd_V1_MembershipResponse {
        try await unary(counters, "ReplaceReplica") { () async throws(APIFailure) in
            let key = try partitionKey(request.partitionKey)
            let status = try await requireLeader(key)
            let member = MemberID(request.memberID)
            guard member != status.replica.member else {
                throw APIFailure(
                    operations.errors.error(HostError.membership(.removingLeader(member))))
            }
            var steps: [String] = []
            let storage = try await chooseStorage(request.storage, for: key, steps: &steps)
            let collected = StepLog()
            let result = try await host { () async throws(HostError) in
                try await server.host.replaceMember(
                    key, member: member, with: storage, catchUpMilliseconds: milliseconds(request.timeoutMs),
                    progress: { collected.add($0) })
            }
            return try await response(
                key, lsn: result.index, member: result.member ?? .none, steps: steps + collected.all)
        }
    }

    func transferLeadership(
        request: Raftd_V1_TransferLeadershipRequest, context: ServerContext
    ) async throws -> Raftd_V1_MembershipResponse {
        try await unary(counters, "TransferLeadership") { () async throws(APIFailure) in
            let key = try partitionKey(request.partitionKey)
            try await requireLeader(key)
            let member = MemberID(request.memberID)
            try await host { () async throws(HostError) in
                try await server.host.transferLeadership(
                    key, to: member, waitMilliseconds: milliseconds(request.timeoutMs))
            }
            return try await response(key, lsn: LogIndex.zero, member: member, steps: ["member \(member) leads"])
        }
    }

    func getRoute(request: Raftd_V1_GetPartitionRequest, context: ServerContext) async throws -> Raftd_V1_RouteResponse
    {
        try await unary(counters, "GetRoute") { () async throws(APIFailure) in
            let found: RouteView?
            switch request.selector {
            case .partitionKey(let text): found = await server.host.lookupRoute(try partitionKey(text))
            case .relativePath(let text):
                let path = try operations.path(text)
                if let key = server.partition(of: path) {
                    found = await server.host.lookupRoute(key)
                } else {
                    found = await server.host.lookupRoute(path: path)
                }
            case nil: throw APIFailure(APIErrors.invalid("give a partition key or a relative path"))
            }
            guard let view = found else {
                throw APIFailure(APIErrors.notFound("no reachable node hosts a replica of it"))
            }
            return route(view)
        }
    }

    func listPartitions(
        request: Raftd_V1_ListPartitionsRequest, context: ServerContext
    ) async throws -> Raftd_V1_ListPartitionsResponse {
        try await unary(counters, "ListPartitions") { () async throws(APIFailure) in
            var response = Raftd_V1_ListPartitionsResponse()
            for entry in server.configuration.storages {
                guard let store = server.metadata[entry.name] else { continue }
                let records = ((try? store.partitions()) ?? []).filter { $0.state == .active }
                var load = Raftd_V1_StorageLoad()
                load.name = entry.name.description
                load.nodeID = server.configuration.nodeID.description
                load.replicas = UInt64(records.count)
                let views = await server.host.routeViews(records.map(\.key))
                for view in views {
                    let bytes = server.partitionBytes(view.replica.partition, storage: entry.name)
                    load.bytes += bytes
                    guard view.leader == view.replica.member else { continue }
                    if request.fewerReplicasThan > 0 && view.route.replicas.count >= Int(request.fewerReplicasThan) {
                        continue
                    }
                    var summary = Raftd_V1_PartitionSummary()
                    summary.route = route(view)
                    summary.bytes = bytes
                    let repositories = (try? store.paths(of: view.replica.partition)) ?? []
                    summary.repositories = UInt32(repositories.count)
                    response.partitions.append(summary)
                }
                response.storages.append(load)
            }
            return response
        }
    }

    // MARK: - Helpers

    private func partitionKey(_ text: String) throws(APIFailure) -> PartitionKey {
        do { return try PartitionKey(parsing: text) } catch {
            throw APIFailure(APIErrors.invalid("partition key '\(text)': \(error)"))
        }
    }

    private func storageName(_ text: String) throws(APIFailure) -> StorageName {
        do { return try StorageName(text) } catch { throw APIFailure(APIErrors.invalid("storage '\(text)': \(error)")) }
    }

    /// The storage asked for, or the one the placement policy chooses (said in `steps`).
    private func chooseStorage(
        _ text: String, for key: PartitionKey, steps: inout [String]
    ) async throws(APIFailure) -> StorageName {
        guard text.isEmpty else { return try storageName(text) }
        let decision = try await placeOne(key)
        steps.append("placement chose \(decision.reason)")
        return decision.storage
    }

    private func milliseconds(_ value: UInt32) -> Int { value == 0 ? 120_000 : Int(value) }

    private func host<T>(_ body: () async throws(HostError) -> T) async throws(APIFailure) -> T {
        do { return try await body() } catch { throw APIFailure(operations.errors.error(error)) }
    }

    /// This node's replica's status when it leads `key`; otherwise NOT_LEADER naming the
    /// leader (asked of the peers when no replica is hosted here).
    @discardableResult
    private func requireLeader(_ key: PartitionKey) async throws(APIFailure) -> ReplicaStatus {
        if let status = try? await server.host.status(of: key) {
            if status.role == .leader { return status }
            let node = status.leader == .none ? nil : status.memberNodes[status.leader]
            throw APIFailure(operations.errors.error(HostError.notLeader(leader: status.leader, node: node)))
        }
        guard let view = await server.host.lookupRoute(key) else {
            throw APIFailure(APIErrors.notFound("no reachable node hosts a replica of \(key)"))
        }
        let storage = view.route.replicas.first { $0.member == view.leader }?.storage
        let node = storage.flatMap { server.host.cluster.node(serving: $0) }
        throw APIFailure(operations.errors.error(HostError.notLeader(leader: view.leader, node: node)))
    }

    /// The voter to hand leadership to when the leader's replica goes: the most caught-up
    /// other voter whose node is connected.
    private func successor(_ key: PartitionKey, _ status: ReplicaStatus) async throws(APIFailure) -> MemberID {
        let connected = Set(server.transport.connectedPeers)
        let candidates = status.voters.filter { $0 != status.replica.member }
            .filter { status.memberNodes[$0].map(connected.contains) ?? false }
            .sorted { (status.matchIndex[$0] ?? .zero, $1) > (status.matchIndex[$1] ?? .zero, $0) }
        guard let first = candidates.first else {
            throw APIFailure(
                operations.errors.error(
                    HostError.membership(.wouldLoseQuorum("no other voter of \(key) is reachable to take over"))))
        }
        return first
    }

    /// A storage for one more replica of `key`, chosen with what this node knows of the
    /// load (its own storages' replicas and the routing entries it holds).
    private func placeOne(_ key: PartitionKey) async throws(APIFailure) -> PlacementPolicy.Decision {
        guard let view = await server.host.routeViews([key]).first else {
            throw APIFailure(APIErrors.notFound("\(key) has no replica here"))
        }
        var policy = PlacementPolicy(storages: await server.knownStorageLoads())
        let partition = PlacementPolicy.Partition(
            key: key, storages: view.route.replicas.map(\.storage), bytes: server.partitionBytes(key, storage: nil))
        switch policy.place(partition) {
        case .success(let decision): return decision
        case .failure(let refusal): throw APIFailure(APIErrors.invalid("\(refusal)"))
        }
    }

    private func response(
        _ key: PartitionKey, lsn: LogIndex, member: MemberID, steps: [String]
    ) async throws(APIFailure) -> Raftd_V1_MembershipResponse {
        var response = Raftd_V1_MembershipResponse()
        response.lsn = lsn.rawValue
        response.memberID = member.rawValue
        response.steps = steps
        if let view = await server.host.routeViews([key]).first { response.route = route(view) }
        return response
    }

    func route(_ view: RouteView) -> Raftd_V1_RouteResponse {
        var out = Raftd_V1_RouteResponse()
        out.partitionKey = view.replica.partition.description
        out.term = view.route.version.term.rawValue
        out.index = view.route.version.index.rawValue
        out.leaderMember = view.leader.rawValue
        out.leaderTerm = view.term.rawValue
        out.commitLsn = view.commit.rawValue
        for replica in view.route.replicas {
            var info = Raftd_V1_ReplicaInfo()
            info.memberID = replica.member.rawValue
            info.storage = replica.storage.description
            info.role = replica.role == .voter ? "voter" : "learner"
            let node = server.host.cluster.node(serving: replica.storage)
            info.nodeID = node?.description ?? ""
            if let match = view.matchIndex[replica.member] {
                info.matchLsn = match.rawValue
                info.lag = view.lastIndex.rawValue - min(view.lastIndex.rawValue, match.rawValue)
            }
            if replica.member == view.leader, let node { out.leaderAddress = server.clientAddress(of: node) ?? "" }
            out.replicas.append(info)
        }
        return out
    }
}

/// Steps reported from a long operation's progress callback.
final class StepLog: @unchecked Sendable {
    private let lock = NSLock()
    private var steps: [String] = []

    func add(_ step: String) { lock.withLock { steps.append(step) } }
    var all: [String] { lock.withLock { steps } }
}

extension RaftServer {
    /// Bytes of this node's replica of `key`: its repositories and its replica directory
    /// (attachments, checkpoints), on `storage` or whichever storage hosts it.
    func partitionBytes(_ key: PartitionKey, storage: StorageName?) -> UInt64 {
        for entry in configuration.storages where storage == nil || entry.name == storage {
            guard let store = metadata[entry.name], (try? store.partition(key)) ?? nil != nil else { continue }
            var total: UInt64 = 0
            for path in (try? store.paths(of: key)) ?? [] {
                total += FileSystem.treeBytes(entry.path + "/" + path.rawValue)
            }
            total += FileSystem.treeBytes(StorageLayout(root: entry.path).replicaDirectory(for: key))
            return total
        }
        return 0
    }

    /// Every storage of the cluster with the replicas this node knows of on it: its own
    /// storages' registries, and the routing entries its storages hold for the others.
    func knownStorageLoads() async -> [PlacementPolicy.StorageLoad] {
        var loads: [StorageName: PlacementPolicy.StorageLoad] = [:]
        for entry in configuration.storages {
            loads[entry.name] = .init(name: entry.name, node: configuration.nodeID, replicas: 0, bytes: 0)
        }
        for peer in configuration.peers {
            for storage in peer.storages { loads[storage] = .init(name: storage, node: peer.id, replicas: 0, bytes: 0) }
        }
        var seen: Set<PartitionKey> = []
        for store in metadata.values {
            for (key, route) in (try? store.routes()) ?? [] where seen.insert(key).inserted {
                for replica in route.replicas { loads[replica.storage]?.replicas += 1 }
            }
        }
        return Array(loads.values)
    }
}

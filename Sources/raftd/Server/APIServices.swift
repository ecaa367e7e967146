import Foundation
import GRPCCore
import RaftAPI
import RaftConsensus
import RaftEngine
import Synchronization

/// Counts client requests by method and status for /metrics.
final class RequestCounters: Sendable {
    private let counts = Mutex<[String: UInt64]>([:])

    func count(_ method: String, _ status: String) {
        counts.withLock { $0["\(method)|\(status)", default: 0] += 1 }
    }

    var snapshot: [(method: String, status: String, count: UInt64)] {
        counts.withLock { $0 }.map { key, value in
            let parts = key.split(separator: "|", maxSplits: 1).map(String.init)
            return (parts[0], parts[1], value)
        }.sorted { ($0.method, $0.status) < ($1.method, $1.status) }
    }
}

/// Runs one unary call: counts it and turns `APIFailure` into its gRPC status.
func unary<T>(
    _ counters: RequestCounters, _ method: String, _ body: () async throws(APIFailure) -> T
)
    async throws -> T
{
    do {
        let result = try await body()
        counters.count(method, "ok")
        return result
    } catch {
        counters.count(method, "\(error.error.code)")
        throw APIErrors.rpcError(error.error)
    }
}

struct RefServiceImpl: Raftd_V1_RefService.SimpleServiceProtocol {
    let operations: APIOperations
    let counters: RequestCounters
    /// Requests one batch stream may have unanswered.
    let maximumOutstanding: Int
    let streams: BatchStreams

    func updateReferences(
        request: Raftd_V1_UpdateReferencesRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_UpdateReferencesResponse
    {
        try await unary(counters, "UpdateReferences") { () async throws(APIFailure) in
            try await operations.updateReferences(request)
        }
    }

    func listRefs(request: Raftd_V1_ListRefsRequest, context: ServerContext) async throws -> Raftd_V1_ListRefsResponse {
        try await unary(counters, "ListRefs") { () async throws(APIFailure) in try await operations.listRefs(request) }
    }

    /// Each item runs as its own task; answers are gathered while the previous write is in
    /// flight and sent together, so a busy stream sends few large messages. The stream ends
    /// when the client ends its half, or when the node shuts down (`BatchStreams`): either
    /// way every request read is answered first.
    func batch(
        request: RPCAsyncSequence<Raftd_V1_BatchRequest, any Error>, response: RPCWriter<Raftd_V1_BatchResponse>,
        context: ServerContext
    ) async throws {
        let outbox = BatchOutbox()
        let writer = Task {
            while let (results, admitted) = await outbox.next() {
                var message = Raftd_V1_BatchResponse()
                message.results = results
                try await response.write(message)
                outbox.written(admitted)
            }
        }
        let reader = Task {
            do {
                for try await message in request {
                    await outbox.waitForRoom(2 * maximumOutstanding)
                    for item in message.items {
                        if streams.draining {
                            var error = Raftd_V1_Error()
                            error.code = .unavailable
                            error.message = "the node is shutting down: not run; retry at another node"
                            outbox.post(result(item.id, .error(error)), admitted: false)
                            continue
                        }
                        guard outbox.admit(maximumOutstanding) else {
                            var error = Raftd_V1_Error()
                            error.code = .unavailable
                            error.message =
                                "more than \(maximumOutstanding) requests outstanding on this stream: wait for answers before sending more"
                            counters.count("Batch", "\(error.code)")
                            outbox.post(result(item.id, .error(error)), admitted: false)
                            continue
                        }
                        Task { outbox.post(await run(item), admitted: true) }
                    }
                }
            } catch {
                // The client's half failed, or the node is shutting down: answer what was read.
            }
        }
        let token = streams.add(reader)
        await reader.value
        streams.remove(token)
        await outbox.drained()
        outbox.finish()
        try await writer.value
    }

    private func run(_ item: Raftd_V1_BatchItem) async -> Raftd_V1_BatchResult {
        switch item.request {
        case .updateReferences(let request):
            do {
                let answer = try await operations.updateReferences(request)
                counters.count("Batch.UpdateReferences", "ok")
                return result(item.id, .updateReferences(answer))
            } catch {
                counters.count("Batch.UpdateReferences", "\(error.error.code)")
                return result(item.id, .error(error.error))
            }
        case .listRefs(let request):
            do {
                let answer = try await operations.listRefs(request)
                counters.count("Batch.ListRefs", "ok")
                return result(item.id, .listRefs(answer))
            } catch {
                counters.count("Batch.ListRefs", "\(error.error.code)")
                return result(item.id, .error(error.error))
            }
        case nil:
            return result(item.id, .error(APIErrors.invalid("a batch item without a request")))
        }
    }

    private func result(_ id: UInt64, _ body: Raftd_V1_BatchResult.OneOf_Result) -> Raftd_V1_BatchResult {
        var result = Raftd_V1_BatchResult()
        result.id = id
        result.result = body
        return result
    }
}

struct RepositoryServiceImpl: Raftd_V1_RepositoryService.SimpleServiceProtocol {
    let operations: APIOperations
    let counters: RequestCounters
    var server: RaftServer { operations.server }

    func createRepository(
        request: Raftd_V1_CreateRepositoryRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_CreateRepositoryResponse
    {
        try await unary(counters, "CreateRepository") { () async throws(APIFailure) in
            let path = try operations.path(request.repository.relativePath)
            let branch: RefName
            do {
                branch = try RefName(request.defaultBranch.isEmpty ? "refs/heads/main" : request.defaultBranch)
            } catch {
                throw APIFailure(operations.errors.error(error))
            }
            let pool = request.objectPoolPath.isEmpty ? nil : try operations.path(request.objectPoolPath)
            let (key, lsn) = try await operations.create(path) { _ in
                var operations: [PartitionOperation] = [.createRepository(path, defaultBranch: branch)]
                if let pool { operations.append(.linkToPool(repository: path, pool: pool)) }
                return operations
            } inPartition: { () throws(APIFailure) in
                // A pool's members live in its partition.
                guard let pool else { return nil }
                guard let key = server.partition(of: pool) else {
                    throw APIFailure(APIErrors.notFound("object pool '\(pool)' does not exist"))
                }
                return key
            }
            var response = Raftd_V1_CreateRepositoryResponse()
            response.partitionKey = key.description
            response.lsn = lsn.rawValue
            return response
        }
    }

    func removeRepository(
        request: Raftd_V1_RemoveRepositoryRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_RemoveRepositoryResponse
    {
        try await unary(counters, "RemoveRepository") { () async throws(APIFailure) in
            let path = try operations.path(request.repository.relativePath)
            let key = try await operations.hostedPartition(of: path)
            var response = Raftd_V1_RemoveRepositoryResponse()
            response.lsn = try await operations.commit(key, [.removeRepository(path)]).rawValue
            return response
        }
    }

    func repositoryExists(
        request: Raftd_V1_RepositoryExistsRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_RepositoryExistsResponse
    {
        try await unary(counters, "RepositoryExists") { () async throws(APIFailure) in
            let path = try operations.path(request.repository.relativePath)
            var response = Raftd_V1_RepositoryExistsResponse()
            if let key = server.partition(of: path) {
                response.exists = true
                response.partitionKey = key.description
            }
            return response
        }
    }

    func listRepositories(
        request: Raftd_V1_ListRepositoriesRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_ListRepositoriesResponse
    {
        try await unary(counters, "ListRepositories") { () throws(APIFailure) in
            var response = Raftd_V1_ListRepositoriesResponse()
            for (name, store) in server.metadata.sorted(by: { $0.key < $1.key })
            where request.storage.isEmpty || request.storage == name.description {
                let mappings: [PathMapping]
                do {
                    mappings = try store.pathMappings(limit: 1_000_000)
                } catch {
                    throw APIFailure(operations.errors.error(PartitionError.storage("\(error)")))
                }
                for mapping in mappings {
                    var entry = Raftd_V1_RepositoryEntry()
                    entry.relativePath = mapping.path.rawValue
                    entry.partitionKey = mapping.partition.description
                    response.repositories.append(entry)
                }
            }
            return response
        }
    }
}

struct ObjectPoolServiceImpl: Raftd_V1_ObjectPoolService.SimpleServiceProtocol {
    let operations: APIOperations
    let counters: RequestCounters

    func createObjectPool(
        request: Raftd_V1_CreateObjectPoolRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_CreateObjectPoolResponse
    {
        try await unary(counters, "CreateObjectPool") { () async throws(APIFailure) in
            let path = try operations.path(request.poolPath)
            let (key, lsn) = try await operations.create(path) { _ in
                [.createObjectPool(path)]
            } inPartition: {
                () throws(APIFailure) in
                nil
            }
            var response = Raftd_V1_CreateObjectPoolResponse()
            response.partitionKey = key.description
            response.lsn = lsn.rawValue
            return response
        }
    }

    func linkRepositoryToObjectPool(
        request: Raftd_V1_LinkRepositoryToObjectPoolRequest, context: ServerContext
    )
        async throws -> Raftd_V1_ObjectPoolChangeResponse
    {
        try await unary(counters, "LinkRepositoryToObjectPool") { () async throws(APIFailure) in
            let path = try operations.path(request.repository.relativePath)
            let pool = try operations.path(request.poolPath)
            let key = try await operations.hostedPartition(of: path)
            var response = Raftd_V1_ObjectPoolChangeResponse()
            response.lsn = try await operations.commit(key, [.linkToPool(repository: path, pool: pool)]).rawValue
            return response
        }
    }

    func disconnectRepositoryFromObjectPool(
        request: Raftd_V1_DisconnectRepositoryFromObjectPoolRequest, context: ServerContext
    ) async throws -> Raftd_V1_ObjectPoolChangeResponse {
        try await unary(counters, "DisconnectRepositoryFromObjectPool") { () async throws(APIFailure) in
            let path = try operations.path(request.repository.relativePath)
            let key = try await operations.hostedPartition(of: path)
            var response = Raftd_V1_ObjectPoolChangeResponse()
            response.lsn = try await operations.commit(key, [.unlinkFromPool(path)]).rawValue
            return response
        }
    }
}

struct ClusterServiceImpl: Raftd_V1_ClusterService.SimpleServiceProtocol {
    let operations: APIOperations
    let counters: RequestCounters
    var server: RaftServer { operations.server }

    func clusterInfo(
        request: Raftd_V1_ClusterInfoRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_ClusterInfoResponse
    {
        try await unary(counters, "ClusterInfo") { () async throws(APIFailure) in
            let configuration = server.configuration
            var response = Raftd_V1_ClusterInfoResponse()
            response.clusterID = configuration.clusterID.description
            let connected = Set(server.transport.connectedPeers)
            var me = Raftd_V1_NodeInfo()
            me.nodeID = configuration.nodeID.description
            me.name = configuration.name
            me.clientAddress = configuration.grpcListen.description
            me.storages = configuration.storages.map(\.name.description)
            me.reachable = true
            response.nodes.append(me)
            for peer in configuration.peers {
                var node = Raftd_V1_NodeInfo()
                node.nodeID = peer.id.description
                node.name = peer.name
                node.clientAddress = peer.clientAddress.description
                node.storages = peer.storages.map(\.description)
                node.reachable = connected.contains(peer.id)
                response.nodes.append(node)
            }
            let counts = await server.partitionCounts()
            for entry in configuration.storages {
                var storage = Raftd_V1_StorageInfo()
                storage.name = entry.name.description
                storage.nodeID = configuration.nodeID.description
                storage.replicas = counts[entry.name]?.replicas ?? 0
                storage.leaders = counts[entry.name]?.leaders ?? 0
                response.storages.append(storage)
            }
            for peer in configuration.peers {
                for name in peer.storages {
                    var storage = Raftd_V1_StorageInfo()
                    storage.name = name.description
                    storage.nodeID = peer.id.description
                    response.storages.append(storage)
                }
            }
            return response
        }
    }

    func getPartition(
        request: Raftd_V1_GetPartitionRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_GetPartitionResponse
    {
        try await unary(counters, "GetPartition") { () async throws(APIFailure) in
            let key: PartitionKey
            switch request.selector {
            case .partitionKey(let text):
                do {
                    key = try PartitionKey(parsing: text)
                } catch {
                    throw APIFailure(APIErrors.invalid("partition key '\(text)': \(error)"))
                }
            case .relativePath(let text):
                key = try await operations.hostedPartition(of: try operations.path(text))
            case nil:
                throw APIFailure(APIErrors.invalid("give a partition key or a relative path"))
            }
            let status: ReplicaStatus
            do {
                status = try await server.host.status(of: key)
            } catch {
                throw APIFailure(operations.errors.error(error))
            }
            var response = Raftd_V1_GetPartitionResponse()
            response.partitionKey = key.description
            response.mode = "\(status.mode)"
            response.leaderMember = status.leader == .none ? "" : "\(status.leader)"
            if status.leader != .none, let node = status.memberNodes[status.leader] {
                response.leaderAddress = server.clientAddress(of: node) ?? ""
            }
            response.term = status.term.rawValue
            response.commitLsn = status.commit.rawValue
            response.appliedLsn = status.applied.rawValue
            response.leaderForMs =
                status.leaderSinceNanoseconds.map { Int64(max(0, MonotonicClock.system.nanoseconds - $0) / 1_000_000) }
                ?? -1
            let connected = Set(server.transport.connectedPeers)
            for member in (status.voters + status.learners).sorted() {
                var replica = Raftd_V1_ReplicaInfo()
                replica.memberID = member.rawValue
                let node = status.memberNodes[member]
                replica.nodeID = node?.description ?? ""
                replica.role = status.learners.contains(member) ? "learner" : "voter"
                replica.storage = node.flatMap { server.storages(of: $0).first }?.description ?? ""
                if let match = status.matchIndex[member] {
                    replica.matchLsn = match.rawValue
                    replica.lag = status.lastIndex.rawValue - min(status.lastIndex.rawValue, match.rawValue)
                }
                replica.healthy = node == server.configuration.nodeID || node.map(connected.contains) ?? false
                // A node-level figure: any frame from the member's node counts (liveness
                // frames flow whatever the group does, so a quiesced group's members show
                // as recently heard while their node is up).
                if node == server.configuration.nodeID {
                    replica.lastContactMs = 0
                } else {
                    replica.lastContactMs = node.flatMap(server.host.silence(of:)).map { Int64($0 / 1_000_000) } ?? -1
                }
                response.replicas.append(replica)
            }
            if let store = server.metadata[key.authority] ?? server.metadata.values.first {
                response.repositories = ((try? store.paths(of: key, limit: 10_000)) ?? []).map(\.rawValue)
            }
            return response
        }
    }

    func setReplicationMode(
        request: Raftd_V1_SetReplicationModeRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_SetReplicationModeResponse
    {
        try await unary(counters, "SetReplicationMode") { () async throws(APIFailure) in
            let key: PartitionKey
            do {
                key = try PartitionKey(parsing: request.partitionKey)
            } catch {
                throw APIFailure(APIErrors.invalid("partition key '\(request.partitionKey)': \(error)"))
            }
            let mode: ReplicationMode
            switch request.mode {
            case "local": mode = .local
            case "raft": mode = .raft
            default: throw APIFailure(APIErrors.invalid("mode '\(request.mode)': use local or raft"))
            }
            do {
                try await server.host.setReplicationMode(mode, of: key)
            } catch {
                throw APIFailure(operations.errors.error(error))
            }
            return Raftd_V1_SetReplicationModeResponse()
        }
    }

    func convertStorage(
        request: Raftd_V1_ConvertStorageRequest, context: ServerContext
    ) async throws
        -> Raftd_V1_ConvertStorageResponse
    {
        try await unary(counters, "ConvertStorage") { () async throws(APIFailure) in
            let storage: StorageName
            do {
                storage = try StorageName(request.storage)
            } catch {
                throw APIFailure(APIErrors.invalid("storage '\(request.storage)': \(error)"))
            }
            do {
                var response = Raftd_V1_ConvertStorageResponse()
                response.converted = UInt64(try await server.host.convertLocalPartitionsToRaft(on: storage).count)
                return response
            } catch {
                throw APIFailure(operations.errors.error(error))
            }
        }
    }
}

/// Refuses every call without the client token (`authorization: Bearer <token>`),
/// compared in constant time.
struct TokenInterceptor: ServerInterceptor {
    let token: [UInt8]
    let counters: RequestCounters

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let presented = request.metadata[stringValues: "authorization"].first(where: { _ in true }) ?? ""
        let expected = Array("Bearer ".utf8) + token
        guard constantTimeEqual(expected, Array(presented.utf8)) else {
            counters.count(context.descriptor.method, "unauthenticated")
            throw RPCError(
                code: .unauthenticated,
                message:
                    "missing or wrong client token: send 'authorization: Bearer <token>' (the cluster's token file)")
        }
        return try await next(request, context)
    }
}

import GRPCCore
import RaftAPI

extension RaftClient {
    // MARK: the throughput path (batch stream)

    /// A compare-and-set transaction on one repository's references, through the batch
    /// stream of the endpoint leading its partition. Returns the LSN it committed at.
    /// Retried only while nothing was done (NOT_LEADER, UNAVAILABLE): a CAS that may have
    /// committed fails with UNKNOWN_OUTCOME, and the caller reads before trying again.
    public func updateReferences(_ request: Raftd_V1_UpdateReferencesRequest) async throws -> UInt64 {
        try await routed(request.repository.relativePath, idempotent: false) { connection in
            let result = try await connection.batch.submit(.updateReferences(request))
            switch result.result {
            case .updateReferences(let response): return response.lsn
            case .error(let error): throw RaftClientError(error)
            default: throw RaftClientError(code: .internal, message: "an answer of the wrong kind")
            }
        }
    }

    /// The references of a repository at a consistency level (through the batch stream).
    /// Stale-at-LSN reads are served by whichever endpoint is tried first.
    public func listRefs(_ request: Raftd_V1_ListRefsRequest) async throws -> Raftd_V1_ListRefsResponse {
        let key = request.consistency == .staleAtLsn ? "" : request.repository.relativePath
        return try await routed(key, idempotent: true) { connection in
            let result = try await connection.batch.submit(.listRefs(request))
            switch result.result {
            case .listRefs(let response): return response
            case .error(let error): throw RaftClientError(error)
            default: throw RaftClientError(code: .internal, message: "an answer of the wrong kind")
            }
        }
    }

    /// Reads a repository's references at one endpoint (stale-at-LSN, for replica checks).
    public func listRefs(
        at endpoint: String, _ request: Raftd_V1_ListRefsRequest
    ) async throws
        -> Raftd_V1_ListRefsResponse
    {
        let connection = try connection(endpoint)
        let result = try await connection.batch.submit(.listRefs(request))
        switch result.result {
        case .listRefs(let response): return response
        case .error(let error): throw RaftClientError(error)
        default: throw RaftClientError(code: .internal, message: "an answer of the wrong kind")
        }
    }

    // MARK: unary calls

    /// The same transaction as a unary call (simple clients, and the benchmark's
    /// comparison).
    public func updateReferencesUnary(_ request: Raftd_V1_UpdateReferencesRequest) async throws -> UInt64 {
        try await routed(request.repository.relativePath, idempotent: false) { connection in
            try await Self.unary {
                try await connection.refs.updateReferences(
                    request, metadata: connection.metadata, options: connection.options
                ).lsn
            }
        }
    }

    /// Creates an object pool (a partition of its own, which its members join).
    public func createObjectPool(_ path: String) async throws -> Raftd_V1_CreateObjectPoolResponse {
        var request = Raftd_V1_CreateObjectPoolRequest()
        request.poolPath = path
        let frozen = request
        return try await routed("", idempotent: false) { connection in
            try await Self.unary {
                try await connection.pools.createObjectPool(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    public func createRepository(
        _ path: String, defaultBranch: String = "", objectPool: String = ""
    ) async throws
        -> Raftd_V1_CreateRepositoryResponse
    {
        var request = Raftd_V1_CreateRepositoryRequest()
        request.repository.relativePath = path
        request.defaultBranch = defaultBranch
        request.objectPoolPath = objectPool
        let frozen = request
        // A new repository gets a new partition on the node that is asked: any node will do,
        // so an unavailable one is skipped; its outcome is not retried when unknown.
        return try await routed("", idempotent: false) { connection in
            try await Self.unary {
                try await connection.repositories.createRepository(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    public func removeRepository(_ path: String) async throws -> UInt64 {
        var request = Raftd_V1_RemoveRepositoryRequest()
        request.repository.relativePath = path
        let frozen = request
        return try await routed(path, idempotent: false) { connection in
            try await Self.unary {
                try await connection.repositories.removeRepository(
                    frozen, metadata: connection.metadata, options: connection.options
                ).lsn
            }
        }
    }

    public func repositoryExists(_ path: String) async throws -> Raftd_V1_RepositoryExistsResponse {
        var request = Raftd_V1_RepositoryExistsRequest()
        request.repository.relativePath = path
        let frozen = request
        return try await routed("", idempotent: true) { connection in
            try await Self.unary {
                try await connection.repositories.repositoryExists(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    public func listRepositories(
        storage: String = "", at endpoint: String? = nil
    ) async throws
        -> [Raftd_V1_RepositoryEntry]
    {
        var request = Raftd_V1_ListRepositoriesRequest()
        request.storage = storage
        let frozen = request
        let call: @Sendable (Connection) async throws -> [Raftd_V1_RepositoryEntry] = { connection in
            try await Self.unary {
                try await connection.repositories.listRepositories(
                    frozen, metadata: connection.metadata, options: connection.options
                ).repositories
            }
        }
        if let endpoint { return try await call(try connection(endpoint)) }
        return try await routed("", idempotent: true, call)
    }

    public func clusterInfo(at endpoint: String? = nil) async throws -> Raftd_V1_ClusterInfoResponse {
        let call: @Sendable (Connection) async throws -> Raftd_V1_ClusterInfoResponse = { connection in
            try await Self.unary {
                try await connection.cluster.clusterInfo(
                    Raftd_V1_ClusterInfoRequest(), metadata: connection.metadata, options: connection.options)
            }
        }
        if let endpoint { return try await call(try connection(endpoint)) }
        return try await routed("", idempotent: true, call)
    }

    /// A partition's state as the endpoint asked sees it (nil: any endpoint).
    public func partition(
        key: String? = nil, relativePath: String? = nil, at endpoint: String? = nil
    ) async throws
        -> Raftd_V1_GetPartitionResponse
    {
        var request = Raftd_V1_GetPartitionRequest()
        if let key { request.partitionKey = key } else if let relativePath { request.relativePath = relativePath }
        let frozen = request
        let call: @Sendable (Connection) async throws -> Raftd_V1_GetPartitionResponse = { connection in
            try await Self.unary {
                try await connection.cluster.getPartition(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
        if let endpoint { return try await call(try connection(endpoint)) }
        return try await routed("", idempotent: true, call)
    }
}

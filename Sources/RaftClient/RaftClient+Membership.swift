import RaftAPI

/// Membership and routing calls. Each is sent to the partition's leader (NOT_LEADER hints
/// are followed); a refused change throws `membershipRefused` with its `refusal`, and is
/// not retried here (the caller decides: `change_in_flight` and `not_caught_up` clear
/// with time).
extension RaftClient {
    public func addReplica(
        partition: String, storage: String = "", waitCaughtUp: Bool = false, timeoutMilliseconds: UInt32 = 0
    ) async throws -> Raftd_V1_MembershipResponse {
        var request = Raftd_V1_AddReplicaRequest()
        request.partitionKey = partition
        request.storage = storage
        request.waitCaughtUp = waitCaughtUp
        request.timeoutMs = timeoutMilliseconds
        let frozen = request
        return try await routed(partition, idempotent: false) { connection in
            try await Self.unary {
                try await connection.cluster.addReplica(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    public func promoteReplica(
        partition: String, member: UInt64, maxLag: UInt64 = 0, timeoutMilliseconds: UInt32 = 0
    ) async throws -> Raftd_V1_MembershipResponse {
        var request = Raftd_V1_PromoteReplicaRequest()
        request.partitionKey = partition
        request.memberID = member
        request.maxLag = maxLag
        request.timeoutMs = timeoutMilliseconds
        let frozen = request
        return try await routed(partition, idempotent: false) { connection in
            try await Self.unary {
                try await connection.cluster.promoteReplica(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    public func removeReplica(
        partition: String, member: UInt64, timeoutMilliseconds: UInt32 = 0
    ) async throws -> Raftd_V1_MembershipResponse {
        var request = Raftd_V1_RemoveReplicaRequest()
        request.partitionKey = partition
        request.memberID = member
        request.timeoutMs = timeoutMilliseconds
        let frozen = request
        return try await routed(partition, idempotent: false) { connection in
            try await Self.unary {
                try await connection.cluster.removeReplica(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    public func replaceReplica(
        partition: String, member: UInt64, storage: String = "", timeoutMilliseconds: UInt32 = 0
    ) async throws -> Raftd_V1_MembershipResponse {
        var request = Raftd_V1_ReplaceReplicaRequest()
        request.partitionKey = partition
        request.memberID = member
        request.storage = storage
        request.timeoutMs = timeoutMilliseconds
        let frozen = request
        return try await routed(partition, idempotent: false) { connection in
            try await Self.unary {
                try await connection.cluster.replaceReplica(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    public func transferLeadership(
        partition: String, to member: UInt64, timeoutMilliseconds: UInt32 = 0
    ) async throws -> Raftd_V1_MembershipResponse {
        var request = Raftd_V1_TransferLeadershipRequest()
        request.partitionKey = partition
        request.memberID = member
        request.timeoutMs = timeoutMilliseconds
        let frozen = request
        return try await routed(partition, idempotent: true) { connection in
            try await Self.unary {
                try await connection.cluster.transferLeadership(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
    }

    /// A partition's routing entry by key or relative path, from `endpoint` (nil: any).
    public func route(
        key: String? = nil, relativePath: String? = nil, at endpoint: String? = nil
    ) async throws -> Raftd_V1_RouteResponse {
        var request = Raftd_V1_GetPartitionRequest()
        if let key { request.partitionKey = key } else if let relativePath { request.relativePath = relativePath }
        let frozen = request
        let call: @Sendable (Connection) async throws -> Raftd_V1_RouteResponse = { connection in
            try await Self.unary {
                try await connection.cluster.getRoute(
                    frozen, metadata: connection.metadata, options: connection.options)
            }
        }
        if let endpoint { return try await call(try connection(endpoint)) }
        return try await routed("", idempotent: true, call)
    }

    /// The partitions led by the node at `endpoint`, and its storages' load.
    public func listPartitions(
        at endpoint: String, fewerReplicasThan: UInt32 = 0
    ) async throws -> Raftd_V1_ListPartitionsResponse {
        var request = Raftd_V1_ListPartitionsRequest()
        request.fewerReplicasThan = fewerReplicasThan
        let frozen = request
        return try await Self.unary {
            let connection = try connection(endpoint)
            return try await connection.cluster.listPartitions(
                frozen, metadata: connection.metadata, options: connection.options)
        }
    }
}

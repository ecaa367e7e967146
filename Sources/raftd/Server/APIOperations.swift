import Foundation
import GRPCCore
import RaftAPI
import RaftConsensus
import RaftEngine
import Synchronization

/// The operations behind both the unary RPCs and the batch stream: each returns its answer
/// or throws `APIFailure` with the typed error.
struct APIOperations: Sendable {
    let server: RaftServer
    var errors: APIErrors { APIErrors(server: server) }

    func path(_ text: String) throws(APIFailure) -> RelativePath {
        do {
            return try RelativePath(text)
        } catch {
            throw APIFailure(APIErrors.invalid("relative path '\(text)': \(error)"))
        }
    }

    func partition(of path: RelativePath) throws(APIFailure) -> PartitionKey {
        guard let key = server.partition(of: path) else {
            throw APIFailure(
                APIErrors.notFound(
                    "repository '\(path)' is not in any partition this node hosts: create it first (raftd repo create)")
            )
        }
        return key
    }

    /// The partition of `path` when this node hosts it; otherwise NOT_LEADER naming the
    /// node that leads the partition holding it (found through the peers' routing
    /// entries), so the client goes there; NOT_FOUND when no reachable node holds it.
    func hostedPartition(of path: RelativePath) async throws(APIFailure) -> PartitionKey {
        if let key = server.partition(of: path) { return key }
        guard let view = await server.host.lookupRoute(path: path) else {
            throw APIFailure(
                APIErrors.notFound(
                    "repository '\(path)' is not in any partition of a reachable node: create it first (raftd repo create)"
                ))
        }
        let leader =
            view.leader == .none ? view.route.replicas.first : view.route.replicas.first { $0.member == view.leader }
        let node = leader.flatMap { server.host.cluster.node(serving: $0.storage) }
        throw APIFailure(errors.error(HostError.notLeader(leader: leader?.member ?? .none, node: node)))
    }

    func commit(_ key: PartitionKey, _ operations: [PartitionOperation]) async throws(APIFailure) -> LogIndex {
        do {
            return try await server.writer.commit(key, PartitionTransaction(operations))
        } catch {
            throw APIFailure(errors.error(error))
        }
    }

    /// Creates a repository or pool at `path`: only on the path's creator node (others
    /// answer NOT_LEADER naming it), one creation of a path at a time there, never in two
    /// partitions. A creation whose outcome is unknown leaves its minted partition
    /// recorded; a retry commits into that same partition (and finds ALREADY_EXISTS when
    /// the first one did commit).
    func create(
        _ path: RelativePath, _ operations: @Sendable (PartitionKey) -> [PartitionOperation],
        inPartition existing: () throws(APIFailure) -> PartitionKey?
    ) async throws(APIFailure) -> (PartitionKey, LogIndex) {
        // Into an existing partition (a pool's): nothing is minted, so nothing needs one
        // creating node per path. The partition's leader verifies concurrent creations of
        // a path against each other (one commits, the others find it exists); any other
        // node answers NotLeader and the client follows it there.
        if let pooled = try existing() {
            if server.partition(of: path) != nil {
                throw APIFailure(errors.error(PartitionError.repositoryExists(path.rawValue)))
            }
            do {
                return (pooled, try await server.writer.commit(pooled, PartitionTransaction(operations(pooled))))
            } catch {
                var failure = self.errors.error(error)
                if case .refused(.repositoryExists) = error { failure.code = .alreadyExists }
                throw APIFailure(failure)
            }
        }
        let creator = server.creator(of: path)
        guard creator == server.configuration.nodeID else {
            var error = Raftd_V1_Error()
            error.code = .notLeader
            error.leaderAddress = server.clientAddress(of: creator) ?? ""
            error.message = "'\(path)' is created by node \(creator) at \(error.leaderAddress)"
            throw APIFailure(error)
        }
        let claimed = server.creations.withLock { $0.running.insert(path).inserted }
        guard claimed else {
            var error = Raftd_V1_Error()
            error.code = .unavailable
            error.message = "a creation of '\(path)' is in progress; retry"
            throw APIFailure(error)
        }
        defer { _ = server.creations.withLock { $0.running.remove(path) } }
        if server.partition(of: path) != nil {
            throw APIFailure(errors.error(PartitionError.repositoryExists(path.rawValue)))
        }
        let key: PartitionKey
        if let minted = server.creations.withLock({ $0.minted[path] }) {
            key = minted
        } else {
            do {
                key = try await server.provisioner.mint()
            } catch {
                throw APIFailure(self.errors.error(error))
            }
            server.creations.withLock { $0.minted[path] = key }
        }
        // A new partition whose leadership moved (an election under load) is asked to come
        // back: creations of this path stay on this node.
        var outcome: Result<LogIndex, PartitionWriteError> = .failure(.timedOut("not tried"))
        for attempt in 0..<4 {
            do {
                outcome = .success(try await server.writer.commit(key, PartitionTransaction(operations(key))))
            } catch {
                outcome = .failure(error)
            }
            guard case .failure(.host(.notLeader(_, let leaderNode))) = outcome, attempt < 3,
                let status = try? await server.host.status(of: key)
            else { break }
            // The leader hands over (it is on another node when that replica won the
            // partition's first election, under load); without a known leader, wait.
            if let leaderNode, leaderNode != server.configuration.nodeID {
                try? await server.host.transferLeadershipOnPeer(key, to: status.replica.member, at: leaderNode)
            }
            try? await Task.sleep(for: .milliseconds(200 << attempt))
        }
        do {
            let lsn = try outcome.get()
            server.creations.withLock { $0.minted[path] = nil }
            return (key, lsn)
        } catch {
            var failure = self.errors.error(error)
            switch error {
            case .refused(let refusal):
                server.creations.withLock { $0.minted[path] = nil }
                if case .repositoryExists = refusal { failure.code = .alreadyExists }
            case .host(.notLeader), .host(.refused):
                // The new partition's leadership moved: creations of this path stay on this
                // node, so the client retries here, not at the partition's leader.
                failure.code = .unavailable
                failure.leaderAddress = ""
            default:
                break
            }
            throw APIFailure(failure)
        }
    }

    func updateReferences(
        _ request: Raftd_V1_UpdateReferencesRequest
    ) async throws(APIFailure)
        -> Raftd_V1_UpdateReferencesResponse
    {
        let path = try path(request.repository.relativePath)
        let key = try await hostedPartition(of: path)
        var operations: [PartitionOperation] = []
        if !request.pack.isEmpty {
            guard request.pack.count <= PartitionTransaction.maximumInlinePackBytes else {
                throw APIFailure(
                    APIErrors.invalid(
                        "a pack of \(request.pack.count) bytes is over \(PartitionTransaction.maximumInlinePackBytes); push it with git"
                    ))
            }
            operations.append(.attachPack(path, .inline(pack: Array(request.pack), index: [])))
        }
        if !request.updates.isEmpty {
            var updates: [ReferenceUpdate] = []
            do {
                for update in request.updates {
                    updates.append(
                        ReferenceUpdate(
                            name: try RefName(update.reference), old: try ObjectID(hex: update.oldOid),
                            new: try ObjectID(hex: update.newOid)))
                }
            } catch {
                throw APIFailure(errors.error(error))
            }
            operations.append(.updateReferences(path, updates))
        }
        for value in request.setValues { operations.append(.setValue(key: value.key, value: Array(value.value))) }
        for key in request.deleteValues { operations.append(.deleteValue(key: key)) }
        guard !operations.isEmpty else { throw APIFailure(APIErrors.invalid("the transaction is empty")) }
        var response = Raftd_V1_UpdateReferencesResponse()
        response.lsn = try await commit(key, operations).rawValue
        return response
    }

    func listRefs(_ request: Raftd_V1_ListRefsRequest) async throws(APIFailure) -> Raftd_V1_ListRefsResponse {
        let path = try path(request.repository.relativePath)
        let key = try await hostedPartition(of: path)
        let consistency: PartitionReadConsistency
        switch request.consistency {
        case .linearizable: consistency = .linearizable
        case .lease: consistency = .lease
        case .staleAtLsn: consistency = .appliedAtLeast(LogIndex(request.minLsn))
        case .UNRECOGNIZED(let value): throw APIFailure(APIErrors.invalid("unknown consistency \(value)"))
        }
        let (lsn, references): (LogIndex, [RefName: ObjectID]?)
        do {
            (lsn, references) = try await server.reader.references(key, repository: path, consistency: consistency)
        } catch {
            throw APIFailure(errors.error(error))
        }
        guard let references else { throw APIFailure(APIErrors.notFound("repository '\(path)' does not exist")) }
        var response = Raftd_V1_ListRefsResponse()
        response.lsn = lsn.rawValue
        response.references = references.keys.sorted().filter { $0.rawValue.hasPrefix(request.prefix) }.map {
            var reference = Raftd_V1_Reference()
            reference.name = $0.rawValue
            reference.oid = references[$0]!.hex
            return reference
        }
        return response
    }
}

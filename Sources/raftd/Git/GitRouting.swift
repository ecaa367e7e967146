import RaftEngine
import RaftTransport

/// Repositories this node holds no replica of: their partition's nodes are found through
/// the peers' routing entries (`NodeHost.lookupRoute(path:)`), and the client is sent
/// there. Only the first request of a clone, fetch or push is redirected (git moves its
/// base URL on that redirect); the URL carries a ticket, since curl does not send
/// credentials to another host:port.
extension GitService {
    func redirectToReplica(_ request: GitRequest) -> GitServiceError? {
        guard case .advertisement(let service) = request.kind, let hop = replicaElsewhere(request) else { return nil }
        counters.redirects.add(1, ordering: .relaxed)
        return GitServiceError(
            status: .temporaryRedirect,
            message: "no replica of \(request.repository) on this node: node \(hop.name) holds one",
            headers: [
                (
                    "Location",
                    "http://\(hop.address)\(hop.ticket)\(request.encodedPath)/info/refs?service=\(service.rawValue)"
                )
            ])
    }

    /// The Git address of a node holding a replica of the request's repository (its leader
    /// for pushes; the leader or any replica for fetches), and a ticket for the request's
    /// service; nil when this node knows none (or the request names a storage).
    func replicaElsewhere(_ request: GitRequest) -> (name: String, address: PeerAddress, ticket: String)? {
        guard request.storage == nil else { return nil }
        let host = server.host
        let path = request.repository
        guard let view = blocking({ await host.lookupRoute(path: path) }) else { return nil }
        let replicas = view.route.replicas
        let leader = replicas.first { $0.member == view.leader }
        guard let chosen = leader ?? (request.service == .uploadPack ? replicas.first : nil),
            let node = host.cluster.node(serving: chosen.storage), node != server.configuration.nodeID,
            let peer = server.configuration.peers.first(where: { $0.id == node }), let address = peer.gitAddress
        else { return nil }
        let ticket =
            gate.withLock { $0 }?.ticket(for: path, service: request.service, expiry: request.ticketExpiry) ?? ""
        return (peer.name, address, ticket)
    }
}

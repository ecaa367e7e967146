import RaftEngine

/// Repositories this node holds no replica of: their partition's nodes are found through
/// the peers' routing entries (`NodeHost.lookupRoute(path:)`), and the client is sent
/// there. Only the first request of a clone, fetch or push is redirected (git moves its
/// base URL on that redirect); the URL carries a ticket, since curl does not send
/// credentials to another host:port.
extension GitService {
    func redirectToReplica(_ request: GitRequest) -> GitServiceError? {
        guard case .advertisement(let service) = request.kind, request.storage == nil else { return nil }
        let host = server.host
        let path = request.repository
        guard let view = blocking({ await host.lookupRoute(path: path) }) else { return nil }
        // Pushes go to the leader; fetches to the leader when one is known, else to any
        // replica (each serves clones).
        let replicas = view.route.replicas
        let chosen = replicas.first { $0.member == view.leader } ?? (service == .uploadPack ? replicas.first : nil)
        guard let chosen, let node = host.cluster.node(serving: chosen.storage), node != server.configuration.nodeID,
            let peer = server.configuration.peers.first(where: { $0.id == node }), let address = peer.gitAddress
        else { return nil }
        counters.redirects.add(1, ordering: .relaxed)
        let ticket = gate.withLock { $0 }?.ticket(for: path, expiry: request.ticketExpiry) ?? ""
        return GitServiceError(
            status: .temporaryRedirect,
            message: "no replica of \(path) on this node: node \(peer.name) holds one",
            headers: [
                ("Location", "http://\(address)\(ticket)\(request.encodedPath)/info/refs?service=\(service.rawValue)")
            ]
        )
    }
}

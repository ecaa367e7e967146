import RaftConsensus

/// Which node serves which storage. Storage names are unique in the cluster, so a member's
/// storage (from the partition's routing entry) names the node to send its messages to.
/// Placement (a later issue) will change this at run time; for now it is fixed at start.
public struct ClusterMap: Sendable {
    public private(set) var nodes: [NodeID]
    private var storageNode: [StorageName: NodeID]

    public init(_ storagesByNode: [NodeID: [StorageName]]) throws(HostError) {
        nodes = storagesByNode.keys.sorted()
        storageNode = [:]
        for node in nodes {
            for storage in storagesByNode[node]! {
                if let other = storageNode[storage] {
                    throw .invalid("storage \(storage) is listed on both node \(other) and node \(node)")
                }
                storageNode[storage] = node
            }
        }
    }

    /// The node serving `storage`, or nil when the cluster does not know it.
    public func node(serving storage: StorageName) -> NodeID? { storageNode[storage] }

    /// The storages of `node`, sorted.
    public func storages(of node: NodeID) -> [StorageName] {
        storageNode.filter { $0.value == node }.map(\.key).sorted()
    }
}

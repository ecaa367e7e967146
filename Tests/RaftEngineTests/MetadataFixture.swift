import Foundation

@testable import RaftEngine

/// A storage root in a temporary directory and the identities a test opens it with.
struct MetadataFixture {
    let directory: TemporaryDirectory
    let clusterID: ClusterID
    let nodeID: NodeID
    let storageName: StorageName

    init(seed: UInt64 = 1, storageName: String = "default") throws {
        directory = try TemporaryDirectory("raftd-metadata")
        var rng = SplitMix64(seed: seed)
        clusterID = ClusterID.random(using: &rng)
        nodeID = NodeID.random(using: &rng)
        self.storageName = try StorageName(storageName)
    }

    var root: String { directory.path }

    /// Opens the store; each call opens the LMDB environment afresh, as a restart does.
    /// Callers release the previous store first (LMDB allows one environment per process).
    func open(
        clusterID: ClusterID? = nil, storageName: StorageName? = nil, nodeID: NodeID? = nil,
        createIfMissing: Bool = true
    ) throws(MetadataError) -> MetadataStore {
        try MetadataStore.open(
            storageRoot: root, clusterID: clusterID ?? self.clusterID, storageName: storageName ?? self.storageName,
            nodeID: nodeID ?? self.nodeID, createIfMissing: createIfMissing)
    }

    func key(_ text: String) throws -> PartitionKey { try PartitionKey(parsing: text) }

    func remove() { directory.remove() }
}

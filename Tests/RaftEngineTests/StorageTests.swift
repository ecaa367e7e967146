import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Storage: open")
struct StorageTests {
    @Test("Storage: first start creates the layout and the WAL; a reopen finds the same log")
    func firstStartAndReopen() throws {
        let root = try TemporaryDirectory("raftd-storage")
        defer { root.remove() }
        let cluster = ClusterID.random()
        let node = NodeID.random()
        let name = try StorageName("default")
        do {
            let storage = try Storage(
                root: root.path, clusterID: cluster, name: name, nodeID: node, createIfMissing: true,
                walOptions: testLogOptions())
            defer { storage.close() }
            #expect(FileSystem.exists(storage.layout.walDirectory))
            try storage.log.append([GroupWrite(group: GroupID(2), entries: [entry(1, term: 1)])])
        }
        let storage = try Storage(
            root: root.path, clusterID: cluster, name: name, nodeID: node, createIfMissing: false,
            walOptions: testLogOptions())
        defer { storage.close() }
        #expect(storage.log.lastIndex(of: GroupID(2)) == LogIndex(1))
    }

    @Test("Storage: a storage of another cluster is refused before its WAL is opened")
    func foreignClusterRefusedFirst() throws {
        let root = try TemporaryDirectory("raftd-storage")
        defer { root.remove() }
        let node = NodeID.random()
        let name = try StorageName("default")
        do {
            let storage = try Storage(
                root: root.path, clusterID: ClusterID.random(), name: name, nodeID: node, createIfMissing: true,
                walOptions: testLogOptions())
            storage.close()
        }
        // Something in the WAL directory that recovery would refuse: it must not be reached.
        _ = FileManager.default.createFile(atPath: root.path + "/+raft/wal/stray", contents: Data([1]))
        do {
            _ = try Storage(
                root: root.path, clusterID: ClusterID.random(), name: name, nodeID: node, createIfMissing: false,
                walOptions: testLogOptions())
            Issue.record("opened a storage of another cluster")
        } catch {
            guard case .metadata(.foreignCluster) = error else {
                Issue.record("expected the foreign cluster refusal first, got \(error)")
                return
            }
        }
    }

    @Test("Storage: close releases the lock at once; the closed store refuses further use with a clear error")
    func closeReleasesTheLock() throws {
        let root = try TemporaryDirectory("raftd-storage")
        defer { root.remove() }
        let cluster = ClusterID.random()
        let node = NodeID.random()
        let name = try StorageName("default")
        let first = try Storage(
            root: root.path, clusterID: cluster, name: name, nodeID: node, createIfMissing: true,
            walOptions: testLogOptions())
        let key = try PartitionKey(parsing: "default:7")
        _ = try first.metadata.registerPartition(key, mode: .raft)
        // Still referenced, but closed: the storage opens again, in this process.
        first.close()
        let second = try Storage(
            root: root.path, clusterID: cluster, name: name, nodeID: node, createIfMissing: false,
            walOptions: testLogOptions())
        defer { second.close() }
        #expect(try second.metadata.partition(key) != nil)
        do {
            _ = try first.metadata.partition(key)
            Issue.record("a closed metadata store answered")
        } catch {
            #expect(error.description.contains("closed"), "\(error)")
        }
        first.close()  // idempotent
    }
}

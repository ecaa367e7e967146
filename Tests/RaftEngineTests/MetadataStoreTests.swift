import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Metadata: store")
struct MetadataStoreTests {
    @Test("Metadata: first start creates the layout and records the identity at incarnation 1")
    func firstStart() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        #expect(
            store.identity
                == StorageIdentity(
                    clusterID: fixture.clusterID, nodeID: fixture.nodeID, storageName: fixture.storageName,
                    incarnation: .first))
        try StorageLayout(root: fixture.root).validate()
        #expect(FileManager.default.fileExists(atPath: fixture.root + "/+raft/database/data.mdb"))
    }

    @Test("Metadata: identity and incarnation persist across a reopen")
    func reopen() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        do {
            let store = try fixture.open()
            #expect(try store.bumpIncarnation().rawValue == 2)
            #expect(try store.bumpIncarnation().rawValue == 3)
            #expect(store.identity.incarnation.rawValue == 3)
        }
        let store = try fixture.open(createIfMissing: false)
        #expect(store.identity.incarnation.rawValue == 3)
        #expect(store.identity.clusterID == fixture.clusterID)
        #expect(store.identity.nodeID == fixture.nodeID)
    }

    @Test("Metadata: a storage of another cluster is refused with both IDs named")
    func foreignCluster() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        do { _ = try fixture.open() }
        var rng = SplitMix64(seed: 99)
        let other = ClusterID.random(using: &rng)
        #expect(
            throws: MetadataError.foreignCluster(storageRoot: fixture.root, stored: fixture.clusterID, offered: other)
        ) {
            _ = try fixture.open(clusterID: other)
        }
        let message = MetadataError.foreignCluster(storageRoot: fixture.root, stored: fixture.clusterID, offered: other)
            .description
        #expect(message.contains(fixture.clusterID.description) && message.contains(other.description))
        // The refusal changed nothing: the right cluster still opens.
        #expect(try fixture.open().identity.clusterID == fixture.clusterID)
    }

    @Test("Metadata: a different storage name or owning node is refused")
    func nameAndNodeMismatch() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        do { _ = try fixture.open() }
        let otherName = try StorageName("storage-b")
        #expect(
            throws: MetadataError.storageNameMismatch(
                storageRoot: fixture.root, stored: fixture.storageName, offered: otherName)
        ) {
            _ = try fixture.open(storageName: otherName)
        }
        var rng = SplitMix64(seed: 7)
        let otherNode = NodeID.random(using: &rng)
        #expect(
            throws: MetadataError.nodeMismatch(storageRoot: fixture.root, stored: fixture.nodeID, offered: otherNode)
        ) {
            _ = try fixture.open(nodeID: otherNode)
        }
    }

    @Test("Metadata: opening without create refuses a new storage and creates nothing")
    func notInitialized() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        #expect(throws: MetadataError.notInitialized(storageRoot: fixture.root)) {
            _ = try fixture.open(createIfMissing: false)
        }
        #expect(!FileManager.default.fileExists(atPath: fixture.root + "/+raft"))
    }

    @Test("Metadata: an existing storage with a missing directory is refused, not rebuilt")
    func missingDirectoryOnReopen() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        do { _ = try fixture.open() }
        try FileManager.default.removeItem(atPath: fixture.root + "/+raft/wal")
        #expect(throws: MetadataError.self) { _ = try fixture.open() }
        #expect(!FileManager.default.fileExists(atPath: fixture.root + "/+raft/wal"))
    }

    @Test("Metadata: a storage can be open only once at a time")
    func storageInUse() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        do {
            let store = try fixture.open()
            #expect(throws: MetadataError.storageInUse(storageRoot: fixture.root)) { _ = try fixture.open() }
            #expect(store.identity.incarnation == .first)
        }
        // Released with the store: the next open succeeds.
        _ = try fixture.open()
    }

    @Test("Metadata: a newer schema version is refused")
    func newerSchema() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        do {
            let store = try fixture.open()
            try store.environment.write { txn in
                try txn.put(store.databases.meta, MetadataStore.MetaKey.schemaVersion, [1, 0, 0, 0, 2])
            }
        }
        #expect(throws: MetadataError.unsupportedSchema(found: 2, supported: 1)) { _ = try fixture.open() }
    }

    @Test("Metadata: a database with data but no schema version is refused, not initialized over")
    func dataWithoutSchema() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        try StorageLayout(root: fixture.root).create()
        do {
            let env = try LMDBEnvironment(directory: fixture.root + "/+raft/database")
            let db = try env.database("partitions", create: true)
            try env.write { txn in try txn.put(db, Array("stray".utf8), [1]) }
        }
        #expect {
            _ = try fixture.open()
        } throws: { error in
            guard case .corrupt(let database, _, _) = error as? MetadataError else { return false }
            return database == "partitions"
        }
    }

    @Test("Metadata: partition IDs start at 2 and increase across lease boundaries")
    func partitionIDSequence() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let lease = MetadataStore.partitionIDLeaseSize
        #expect(try store.partitionIDLeaseEnd().rawValue == 2)
        var previous: UInt64 = 1
        for _ in 0..<(lease + 10) {
            let id = try store.allocatePartitionID().rawValue
            #expect(id == previous + 1)
            previous = id
        }
        #expect(previous == lease + 11)
        // Two leases taken so far, and only two writes of the mark.
        #expect(try store.partitionIDLeaseEnd().rawValue == 2 + 2 * lease)
    }

    @Test("Metadata: partition IDs are never reused after a crash")
    func partitionIDsAfterCrash() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        var handedOut: Set<UInt64> = []
        var last: UInt64 = 0
        // Each round drops the store without any shutdown step, which is all a crash loses:
        // the store has no close that persists anything.
        for round in 0..<3 {
            let store = try fixture.open()
            for _ in 0..<(5 + round * 700) {
                let id = try store.allocatePartitionID().rawValue
                #expect(id > last)
                #expect(handedOut.insert(id).inserted)
                last = id
            }
        }
        let store = try fixture.open()
        let next = try store.allocatePartitionID().rawValue
        #expect(next > last && !handedOut.contains(next))
        #expect(next >= 2 + 3 * MetadataStore.partitionIDLeaseSize)
    }

    @Test("Metadata: concurrent allocations hand out distinct partition IDs")
    func concurrentAllocation() async throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let ids = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<4 {
                group.addTask { try (0..<600).map { _ in try store.allocatePartitionID().rawValue } }
            }
            return try await group.reduce(into: [UInt64]()) { $0 += $1 }
        }
        #expect(Set(ids).count == 2400)
        #expect(ids.min() == 2)
    }
}

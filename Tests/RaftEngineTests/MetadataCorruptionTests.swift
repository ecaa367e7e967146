import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Metadata: damaged bytes")
struct MetadataCorruptionTests {
    /// Writes `value` under `key` in `database` behind the store's back, with the raw API.
    func damage(_ store: MetadataStore, _ database: LMDBDatabase, _ key: [UInt8], _ value: [UInt8]) throws {
        try store.environment.write { txn in try txn.put(database, key, value) }
    }

    func isCorrupt(_ error: any Error, database: String) -> Bool {
        guard case .corrupt(let name, _, _) = error as? MetadataError else { return false }
        return name == database
    }

    @Test("Metadata: damaged registry, path, route, conf state and applied values read as corrupt")
    func damagedValues() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = try fixture.key("default:2")
        let record = try store.registerPartition(key, mode: .raft)
        let path = try RelativePath("group/project.git")
        try store.mapPath(path, to: key)
        let groupKey = MetadataStore.groupKey(record.group)
        let dbs = store.databases

        try damage(store, dbs.applied, groupKey, [1, 0, 0, 7])
        #expect { try store.appliedIndex(for: record.group) } throws: { isCorrupt($0, database: "applied") }
        #expect { try store.setAppliedIndex(9, for: record.group) } throws: { isCorrupt($0, database: "applied") }

        try damage(store, dbs.confStates, groupKey, [1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect { try store.confState(for: record.group) } throws: { isCorrupt($0, database: "conf_states") }

        try damage(store, dbs.routes, key.encoded, [1] + [UInt8](repeating: 0, count: 24) + [0xFF, 0xFF])
        #expect { try store.route(for: key) } throws: { isCorrupt($0, database: "routes") }
        #expect { try store.routes() } throws: { isCorrupt($0, database: "routes") }
        #expect {
            try store.updateRoute(
                try RouteEntry(version: RouteVersion(term: 9, index: 9), replicas: []), for: key)
        } throws: {
            isCorrupt($0, database: "routes")
        }

        try damage(store, dbs.paths, path.utf8, [1, 0x41])
        #expect { try store.partitionKey(for: path) } throws: { isCorrupt($0, database: "paths") }
        #expect { try store.pathMappings() } throws: { isCorrupt($0, database: "paths") }

        try damage(store, dbs.partitions, key.encoded, [1, 0, 0, 0, 0, 0, 0, 0, 2, 9, 1])
        #expect { try store.partition(key) } throws: { isCorrupt($0, database: "partitions") }
        #expect { try store.partitions() } throws: { isCorrupt($0, database: "partitions") }
        #expect { try store.registerPartition(key, mode: .raft) } throws: { isCorrupt($0, database: "partitions") }
    }

    @Test("Metadata: a reverse index that disagrees with the registry reads as corrupt")
    func disagreeingReverseIndex() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let a = try store.registerPartition(try fixture.key("default:2"), mode: .raft)
        let b = try store.registerPartition(try fixture.key("default:3"), mode: .raft)
        try damage(store, store.databases.groups, MetadataStore.groupKey(a.group), [1] + b.key.encoded)
        #expect { try store.partition(group: a.group) } throws: { isCorrupt($0, database: "groups") }
        try damage(store, store.databases.groups, MetadataStore.groupKey(a.group), [2] + a.key.encoded)
        #expect { try store.partition(group: a.group) } throws: { isCorrupt($0, database: "groups") }
    }

    @Test("Metadata: a registry key that is not a partition key reads as corrupt")
    func damagedKey() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try damage(store, store.databases.partitions, Array("junk".utf8), [1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1])
        #expect { try store.partitions() } throws: { isCorrupt($0, database: "partitions") }
    }

    @Test("Metadata: damaged identity, schema or sequence records refuse to open")
    func damagedMeta() throws {
        for (name, value) in [
            ("identity", [1, 2, 3]), ("schema_version", [1, 0, 1]),
            ("partition_id_lease", [1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ] as [(String, [UInt8])] {
            let fixture = try MetadataFixture()
            defer { fixture.remove() }
            do {
                let store = try fixture.open()
                try damage(store, store.databases.meta, Array(name.utf8), value)
            }
            #expect {
                _ = try fixture.open()
            } throws: { error in
                guard case .corrupt("meta", name, _) = error as? MetadataError else { return false }
                return true
            }
        }
    }

    @Test("Metadata: a damaged group sequence refuses registration")
    func damagedGroupSequence() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        try damage(store, store.databases.meta, MetadataStore.MetaKey.nextGroupID, [1, 0, 0])
        #expect { try store.registerPartition(try fixture.key("default:2"), mode: .raft) } throws: {
            isCorrupt($0, database: "meta")
        }
        #expect(try store.partitions().isEmpty)
    }

    @Test("Metadata: decoders refuse every truncation and survive random bytes (seeded)")
    func decoderFuzz() throws {
        let seed: UInt64 = 0x5EED_0004
        var rng = SplitMix64(seed: seed)
        let route = try RouteEntry(
            version: RouteVersion(term: 3, index: 44),
            replicas: [
                RouteReplica(member: 1, storage: try StorageName("default"), role: .voter),
                RouteReplica(member: 9, storage: try StorageName("storage-b"), role: .learner),
            ], leaderHint: 9)
        let conf = try StoredConfState(voters: [1, 2, 3], learners: [9], votersOutgoing: [1, 2], learnersNext: [3])
        let key = try PartitionKey(parsing: "default:12")
        let record = PartitionRecord(key: key, group: GroupID(7), mode: .raft, state: .active)
        let identity = StorageIdentity(
            clusterID: ClusterID.random(using: &rng), nodeID: NodeID.random(using: &rng),
            storageName: try StorageName("default"), incarnation: .first)
        let decoders: [(name: String, valid: [UInt8], decode: ([UInt8]) throws -> Void)] = [
            ("route", route.encoded, { _ = try RouteEntry(decoding: $0) }),
            ("conf", conf.encoded, { _ = try StoredConfState(decoding: $0) }),
            ("record", record.encodedValue, { _ = try PartitionRecord(key: key, decoding: $0) }),
            ("identity", identity.encoded, { _ = try StorageIdentity(decoding: $0) }),
            ("key", key.encoded, { _ = try PartitionKey(decoding: $0) }),
        ]
        #expect(try RouteEntry(decoding: route.encoded) == route)
        #expect(try PartitionRecord(key: key, decoding: record.encodedValue) == record)
        #expect(try StorageIdentity(decoding: identity.encoded) == identity)
        for decoder in decoders {
            for length in 0..<decoder.valid.count {
                #expect(throws: (any Error).self, "\(decoder.name) truncated to \(length), seed \(seed)") {
                    try decoder.decode(Array(decoder.valid.prefix(length)))
                }
            }
            #expect(throws: (any Error).self, "\(decoder.name) with a trailing byte") {
                try decoder.decode(decoder.valid + [0])
            }
            // Random mutations and random strings must decode or throw, never trap.
            for _ in 0..<2000 {
                var bytes = decoder.valid
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                _ = try? decoder.decode(bytes)
                _ = try? decoder.decode(rng.bytes(Int(rng.next() % 64)))
            }
        }
    }
}

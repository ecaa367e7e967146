import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Metadata: registry and paths")
struct MetadataRegistryTests {
    @Test("Metadata: registry register, look up by key and by group, list in key order")
    func registerAndLookUp() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let a = try fixture.key("default:10")
        let b = try fixture.key("default:2")
        let c = try fixture.key("another:7")
        let recordA = try store.registerPartition(a, mode: .raft)
        let recordB = try store.registerPartition(b, mode: .local, state: .active)
        let recordC = try store.registerPartition(c, mode: .raft, state: .active)
        #expect(recordA == PartitionRecord(key: a, group: GroupID(2), mode: .raft, state: .initializing))
        #expect(recordB.group == GroupID(3) && recordC.group == GroupID(4))
        #expect(try store.partition(a) == recordA)
        #expect(try store.partition(group: GroupID(3)) == recordB)
        #expect(try store.partition(group: GroupID(99)) == nil)
        #expect(try store.partition(try fixture.key("default:11")) == nil)
        #expect(try store.partitions().map(\.key) == [c, b, a])
        #expect(try store.partitions(after: c, limit: 1).map(\.key) == [b])
        #expect(try store.partitions(after: a).isEmpty)
    }

    @Test("Metadata: registry refuses a second registration of the same partition")
    func duplicateRegistration() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = try fixture.key("default:5")
        let first = try store.registerPartition(key, mode: .raft)
        #expect(throws: MetadataError.partitionAlreadyRegistered(key, group: first.group)) {
            try store.registerPartition(key, mode: .local)
        }
        #expect(try store.partition(key) == first)
        #expect(try store.partitions().count == 1)
    }

    @Test("Metadata: registry state moves forward only, mode switches freely")
    func stateTransitions() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = try fixture.key("default:5")
        try store.registerPartition(key, mode: .local)
        #expect(try store.updateReplicaState(.active, of: key).state == .active)
        #expect(try store.updateReplicationMode(.raft, of: key).mode == .raft)
        #expect(throws: MetadataError.invalidStateTransition(key, from: .active, to: .initializing)) {
            try store.updateReplicaState(.initializing, of: key)
        }
        #expect(try store.updateReplicaState(.leaving, of: key).state == .leaving)
        #expect(throws: MetadataError.invalidStateTransition(key, from: .leaving, to: .active)) {
            try store.updateReplicaState(.active, of: key)
        }
        #expect(try store.partition(key)?.state == .leaving)
        #expect(try store.partition(key)?.mode == .raft)
        let missing = try fixture.key("default:6")
        #expect(throws: MetadataError.partitionNotFound(missing)) { try store.updateReplicaState(.active, of: missing) }
    }

    @Test("Metadata: registry removes only tombstoned replicas, with everything kept for them")
    func removal() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = try fixture.key("default:5")
        let other = try fixture.key("default:6")
        let record = try store.registerPartition(key, mode: .raft, state: .active)
        let otherRecord = try store.registerPartition(other, mode: .raft, state: .active)
        let paths = try (0..<1500).map { try RelativePath("@hashed/\($0 % 7)/repo-\($0).git") }
        try store.mapPaths(paths, to: key)
        try store.mapPath(try RelativePath("kept.git"), to: other)
        try store.setAppliedIndex(LogIndex(9), for: record.group)
        try store.setConfState(try StoredConfState(voters: [1, 2, 3]), for: record.group)
        try store.updateRoute(try RouteEntry(version: RouteVersion(term: 1, index: 1), replicas: []), for: key)

        #expect(throws: MetadataError.partitionNotTombstoned(key, state: .active)) { try store.removePartition(key) }
        #expect(try store.paths(of: key).count == 1500)

        try store.updateReplicaState(.tombstoned, of: key)
        #expect(try store.removePartition(key).group == record.group)
        #expect(try store.partition(key) == nil)
        #expect(try store.partition(group: record.group) == nil)
        #expect(try store.paths(of: key).isEmpty)
        #expect(try store.partitionKey(for: paths[0]) == nil)
        #expect(try store.pathMappings().map(\.path.rawValue) == ["kept.git"])
        #expect(try store.confState(for: record.group) == nil)
        #expect(throws: MetadataError.groupNotFound(record.group)) { try store.appliedIndex(for: record.group) }
        #expect(try store.route(for: key) != nil)
        #expect(try store.partition(other) == otherRecord)
        #expect(throws: MetadataError.partitionNotFound(key)) { try store.removePartition(key) }

        // Registering the partition again gives a new group ID: group IDs are never reused.
        #expect(try store.registerPartition(key, mode: .raft).group == GroupID(4))
    }

    @Test("Metadata: group IDs are never reused across reopens and removals")
    func groupIDsNeverReused() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        var seen: Set<GroupID> = []
        for round in 0..<3 {
            let store = try fixture.open()
            for i in 0..<4 {
                let key = try fixture.key("default:\(round * 10 + i + 2)")
                let record = try store.registerPartition(key, mode: .raft)
                #expect(seen.insert(record.group).inserted)
                try store.updateReplicaState(.tombstoned, of: key)
                try store.removePartition(key)
            }
        }
        #expect(seen.map(\.rawValue).sorted() == Array(2...13))
    }

    @Test("Metadata: registry persists across a reopen")
    func registryPersists() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let key = try fixture.key("default:5")
        let path = try RelativePath("group/project.git")
        let record: PartitionRecord
        do {
            let store = try fixture.open()
            record = try store.registerPartition(key, mode: .raft, state: .active)
            try store.mapPath(path, to: key)
        }
        let store = try fixture.open()
        #expect(try store.partition(key) == record)
        #expect(try store.partition(group: record.group) == record)
        #expect(try store.partitionKey(for: path) == key)
    }

    @Test("Metadata: paths map, look up, list by prefix and unmap")
    func pathMappings() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let a = try fixture.key("default:2")
        let b = try fixture.key("default:3")
        try store.registerPartition(a, mode: .raft)
        try store.registerPartition(b, mode: .raft)
        let texts = [
            "@hashed/ab/cd/1.git", "@hashed/ab/ce/2.git", "@hashed/ac/00/3.git", "group/a.git", "group/ab.git",
        ]
        for (i, text) in texts.enumerated() { try store.mapPath(try RelativePath(text), to: i % 2 == 0 ? a : b) }
        #expect(try store.partitionKey(for: try RelativePath("group/a.git")) == b)
        #expect(try store.partitionKey(for: try RelativePath("group/none.git")) == nil)
        #expect(
            try store.pathMappings(withPrefix: "@hashed/ab/").map(\.path.rawValue) == [
                "@hashed/ab/cd/1.git", "@hashed/ab/ce/2.git",
            ])
        #expect(try store.pathMappings(withPrefix: "group/a").map(\.path.rawValue) == ["group/a.git", "group/ab.git"])
        #expect(try store.pathMappings().count == 5)
        #expect(try store.pathMappings(limit: 2).count == 2)
        #expect(
            try store.paths(of: a).map(\.rawValue) == ["@hashed/ab/cd/1.git", "@hashed/ac/00/3.git", "group/ab.git"])

        #expect(try store.unmapPath(try RelativePath("group/ab.git")) == a)
        #expect(try store.unmapPath(try RelativePath("group/ab.git")) == nil)
        #expect(try store.paths(of: a).count == 2)
        #expect(try store.pathMappings(withPrefix: "group/").map(\.path.rawValue) == ["group/a.git"])
    }

    @Test("Metadata: a path mapped to another partition is refused and stays where it was")
    func pathMappedElsewhere() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let a = try fixture.key("default:2")
        let b = try fixture.key("default:3")
        try store.registerPartition(a, mode: .raft)
        try store.registerPartition(b, mode: .raft)
        let path = try RelativePath("group/project.git")
        try store.mapPath(path, to: a)
        try store.mapPath(path, to: a)  // the same mapping again is a no-op
        #expect(throws: MetadataError.pathMappedElsewhere(path, existing: a, offered: b)) {
            try store.mapPath(path, to: b)
        }
        #expect(try store.partitionKey(for: path) == a)
        #expect(try store.paths(of: b).isEmpty)
        #expect(try store.paths(of: a) == [path])
        // A batch with one conflicting path maps none of its paths.
        let fresh = try RelativePath("group/fresh.git")
        #expect(throws: MetadataError.pathMappedElsewhere(path, existing: a, offered: b)) {
            try store.mapPaths([fresh, path], to: b)
        }
        #expect(try store.partitionKey(for: fresh) == nil)
    }

    @Test("Metadata: a path cannot be mapped to an unregistered partition")
    func pathToUnregisteredPartition() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = try fixture.key("default:2")
        #expect(throws: MetadataError.partitionNotFound(key)) {
            try store.mapPath(try RelativePath("group/project.git"), to: key)
        }
        #expect(try store.pathMappings().isEmpty)
    }
}

@Suite("Metadata: bulk replica operations")
struct MetadataBulkTests {
    @Test("Metadata: creating 20,000 replicas in one transaction grows the map instead of failing")
    func bulkCreateGrowsTheMap() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let name = try StorageName("default")
        let route = try RouteEntry(
            version: RouteVersion(term: .zero, index: .zero),
            replicas: [RouteReplica(member: 1, storage: name, role: .voter)])
        let conf = try StoredConfState(voters: [1])
        let replicas = try (0..<20_000).map {
            MetadataStore.NewReplica(
                key: PartitionKey(authority: name, partitionID: try PartitionID(UInt64($0) + 2)), route: route,
                confState: conf)
        }
        let records = try store.createRaftReplicas(replicas)
        #expect(records.count == 20_000)
        #expect(Set(records.map(\.group)).count == 20_000)
        let loaded = try store.loadRaftReplicas()
        #expect(loaded.count == 20_000)
        #expect(loaded.allSatisfy { $0.route == route && $0.confState == conf && $0.applied == .zero })
        // Applied indices with configurations, in one transaction; no regression.
        try store.recordApplied(records.prefix(100).map { ($0.group, LogIndex(5), nil) })
        #expect(throws: MetadataError.self) { try store.recordApplied([(records[0].group, LogIndex(4), nil)]) }
        let conf2 = try StoredConfState(voters: [1, 2])
        try store.recordApplied([(records[1].group, LogIndex(9), conf2)])
        #expect(try store.confState(for: records[1].group) == conf2)
        #expect(try store.appliedIndex(for: records[1].group) == LogIndex(9))
        // A second registration of a key refuses the whole batch.
        #expect(throws: MetadataError.self) { try store.createRaftReplicas([replicas[0]]) }
    }
}

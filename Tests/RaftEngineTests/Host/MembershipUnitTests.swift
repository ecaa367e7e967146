import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Membership: codecs, routing entries, placement")
struct MembershipUnitTests {
    let s1 = try! StorageName("s1")
    let s2 = try! StorageName("s2")
    let s3 = try! StorageName("s3")

    @Test(
        "A configuration change carries its context through the WAL codec; entries written before contexts existed decode as they were"
    )
    func confChangeContext() throws {
        let context = PlacementContext.encode([(member: 7, storage: s2, incarnation: .first)])
        let change = ConfChange([.addLearner(7)], context: context)
        let bytes = EntryCodec.encode(change)
        #expect(try EntryCodec.decodeConfChange(bytes) == change)
        let old = ConfChange([.addVoter(2), .remove(3)], transition: .jointImplicit)
        let oldBytes = EntryCodec.encode(old)
        #expect(oldBytes.count == 3 + 9 * 2, "an empty context adds nothing")
        #expect(try EntryCodec.decodeConfChange(oldBytes) == old)
        // A length that does not fit, a cut length, a zero length: refused.
        #expect(throws: HostError.self) { try EntryCodec.decodeConfChange(bytes.dropLast()) }
        #expect(throws: HostError.self) { try EntryCodec.decodeConfChange(oldBytes + [5]) }
        #expect(throws: HostError.self) { try EntryCodec.decodeConfChange(oldBytes + [0, 0]) }
        #expect(
            PlacementContext.decode(context) == [
                7: RouteReplica(member: 7, storage: s2, role: .learner, incarnation: .first)
            ])
        #expect(PlacementContext.decode([]) == [:])
        #expect(PlacementContext.decode([9, 9, 9]) == nil)
        #expect(PlacementContext.decode(context + [0]) == nil)
    }

    @Test(
        "Routing entries follow committed configurations: added members take their storage, roles follow the voters, removed members go"
    )
    func routeFollowsConfiguration() throws {
        let start = try RouteEntry(
            version: RouteVersion(term: 0, index: 0), replicas: [RouteReplica(member: 1, storage: s1, role: .voter)])
        let v1 = RouteVersion(term: 1, index: 4)
        let added = RouteReplica(member: 4, storage: s2, role: .learner, incarnation: try StorageIncarnation(3))
        let learner = try #require(start.applying(ConfState(voters: [1], learners: [4]), added: [4: added], at: v1))
        #expect(learner.version == v1)
        #expect(learner.replicas == [RouteReplica(member: 1, storage: s1, role: .voter), added])
        let promoted = try #require(
            learner.applying(ConfState(voters: [1, 4]), added: [:], at: RouteVersion(term: 1, index: 6)))
        #expect(promoted.replicas.allSatisfy { $0.role == .voter })
        // Joint: the outgoing voter still votes until the joint configuration is left.
        let joint = try #require(
            promoted.applying(
                ConfState(voters: [4, 9], votersOutgoing: [1, 4], learners: []),
                added: [9: RouteReplica(member: 9, storage: s3, role: .learner)],
                at: RouteVersion(term: 2, index: 9)))
        #expect(joint.replicas.map(\.member) == [1, 4, 9] && joint.replicas.allSatisfy { $0.role == .voter })
        let left = try #require(
            joint.applying(ConfState(voters: [4, 9]), added: [:], at: RouteVersion(term: 2, index: 10)))
        #expect(left.replicas.map(\.member) == [4, 9])
        #expect(left.replicas.map(\.storage) == [s2, s3])
        #expect(left.replicas[0].incarnation == (try StorageIncarnation(3)), "the incarnation stays with the member")
        // A member no context names has no storage: no entry is derived (none is invented,
        // and none leaves it out).
        #expect(
            left.applying(ConfState(voters: [4, 9], learners: [11]), added: [:], at: RouteVersion(term: 2, index: 11))
                == nil)
    }

    @Test(
        "Peer wire: routing lookups by key and by path, views, and a joining replica's spec round-trip; malformed ones are refused"
    )
    func wire() throws {
        let key = PartitionKey(authority: s1, partitionID: try PartitionID(3))
        let other = PartitionKey(authority: s2, partitionID: try PartitionID(9))
        let path = try RelativePath("group/a.git")
        for request in [
            BulkRequest.routes(keys: [key, other], paths: []), .routes(keys: [], paths: [path]),
            .routes(keys: [key], paths: [path]),
        ] {
            #expect(try PeerWire.decodeBulkRequest(PeerWire.encode(request)) == request)
        }
        var spec = ReplicaSpec(
            partition: key, member: 12, storage: s2,
            replicas: [
                RouteReplica(member: 1, storage: s1, role: .voter),
                RouteReplica(member: 12, storage: s2, role: .learner, incarnation: try StorageIncarnation(2)),
            ])
        spec.routeVersion = RouteVersion(term: 3, index: 12)
        spec.startConf = ConfState(voters: [1])
        guard case .createReplica(let decoded) = try PeerWire.decodeBulkRequest(PeerWire.encode(.createReplica(spec)))
        else {
            Issue.record("not a replica creation")
            return
        }
        #expect(decoded == spec)
        var view = RouteView(
            route: try RouteEntry(version: RouteVersion(term: 3, index: 12), replicas: spec.replicas),
            members: [1, 12],
            leader: 1, term: 3, commit: 20, replica: ReplicaKey(partition: key, member: 1))
        view.initialConf = ConfState(voters: [1])
        view.matchIndex = [1: 20, 12: 18]
        view.lastIndex = 20
        #expect(try PeerWire.decodeRouteViews(PeerWire.encode([view])) == [view])
        let bytes = PeerWire.encode([view])
        #expect(throws: PeerWireError.self) { try PeerWire.decodeRouteViews(bytes.dropLast()) }
        #expect(throws: PeerWireError.self) { try PeerWire.decodeRouteViews(bytes + [0]) }
        // A lookup naming nothing, and a path that escapes, are refused.
        func lookup(_ paths: [String]) -> [UInt8] {
            var writer = ByteWriter(version: PeerWire.version)
            writer.u8(0)
            writer.u8(6)
            writer.u16(0)
            writer.u16(UInt16(paths.count))
            for path in paths {
                writer.u16(UInt16(path.utf8.count))
                writer.append(Array(path.utf8))
            }
            return writer.bytes
        }
        #expect(try PeerWire.decodeBulkRequest(lookup(["group/a.git"])) == .routes(keys: [], paths: [path]))
        #expect(throws: PeerWireError.self) { try PeerWire.decodeBulkRequest(lookup([])) }
        #expect(throws: PeerWireError.self) { try PeerWire.decodeBulkRequest(lookup(["../etc/x.git"])) }
        #expect(throws: PeerWireError.self) { try PeerWire.decodeBulkRequest(lookup(["/abs/x.git"])) }
    }

    @Test(
        "Placement: never two replicas of a partition on one node, spread over the least loaded nodes, each choice explained; a rebalance plan moves from the fullest storage"
    )
    func placement() throws {
        let (a, b, c) = (NodeID.random(), NodeID.random(), NodeID.random())
        let s4 = try StorageName("s4")
        var policy = PlacementPolicy(storages: [
            .init(name: s1, node: a, replicas: 10, bytes: 1000), .init(name: s2, node: b, replicas: 2, bytes: 100),
            .init(name: s3, node: c, replicas: 2, bytes: 50), .init(name: s4, node: a, replicas: 0, bytes: 0),
        ])
        let key = PartitionKey(authority: s1, partitionID: try PartitionID(2))
        // s4 is empty but on node a, which holds the partition already.
        let first = try policy.place(.init(key: key, storages: [s1], bytes: 10)).get()
        #expect(first.storage == s3, "\(first.reason)")
        #expect(first.reason.contains("least loaded"))
        let second = try policy.place(.init(key: key, storages: [s1, s3], bytes: 10)).get()
        #expect(second.storage == s2)
        guard case .failure = policy.place(.init(key: key, storages: [s1, s2, s3], bytes: 10)) else {
            Issue.record("a fourth replica found a node")
            return
        }
        // A plan for many single-replica partitions spreads them and never doubles a node.
        var fresh = PlacementPolicy(storages: [
            .init(name: s1, node: a, replicas: 0, bytes: 0), .init(name: s2, node: b, replicas: 0, bytes: 0),
            .init(name: s3, node: c, replicas: 0, bytes: 0),
        ])
        let names = [s1, s2, s3]
        var partitions: [PlacementPolicy.Partition] = []
        for n in 2..<32 {
            let home = names[n % 3]
            let key = PartitionKey(authority: home, partitionID: try PartitionID(UInt64(n)))
            partitions.append(.init(key: key, storages: [home], bytes: UInt64(n), pools: n == 5 ? 1 : 0))
        }
        let (decisions, skipped) = fresh.plan(replicationFactor: 3, partitions)
        #expect(decisions.count == 60 && skipped.isEmpty)
        for partition in partitions {
            let added: [StorageName] = decisions.filter { $0.partition == partition.key }.map { $0.storage }
            let storages = partition.storages + added
            #expect(Set(storages).count == 3, "\(partition.key): \(storages)")
        }
        #expect(decisions.contains { $0.reason.contains("object pool") })
        // Rebalance: 12 replicas on s1, none on s4 of a fourth node.
        let d = NodeID.random()
        var uneven = PlacementPolicy(storages: [
            .init(name: s1, node: a, replicas: 12, bytes: 120), .init(name: s2, node: b, replicas: 4, bytes: 40),
            .init(name: s3, node: c, replicas: 4, bytes: 40), .init(name: s4, node: d, replicas: 0, bytes: 0),
        ])
        var held: [PlacementPolicy.Partition] = []
        for n in 2..<14 {
            let key = PartitionKey(authority: s1, partitionID: try PartitionID(UInt64(n)))
            held.append(.init(key: key, storages: [s1], bytes: 10))
        }
        let moves = uneven.rebalance(held)
        #expect(!moves.isEmpty && moves.allSatisfy { $0.from == s1 })
        #expect(uneven.storages.map(\.replicas).max()! - uneven.storages.map(\.replicas).min()! <= 4)
    }

    @Test(
        "Metadata: the configuration a group's log starts from is kept at creation and loaded; a routing entry recorded with an applied index replaces only an older one"
    )
    func initialConfigurationAndRoutes() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = PartitionKey(authority: s1, partitionID: try PartitionID(2))
        let route = try RouteEntry(
            version: RouteVersion(term: 2, index: 8),
            replicas: [
                RouteReplica(member: 1, storage: s1, role: .voter),
                RouteReplica(member: 8, storage: fixture.storageName, role: .learner),
            ])
        let records = try store.createRaftReplicas([
            .init(key: key, route: route, confState: try StoredConfState(voters: [1]))
        ])
        var loaded = try #require(try store.loadRaftReplicas().first)
        #expect(loaded.initialConf == (try StoredConfState(voters: [1])))
        let newer = try RouteEntry(
            version: RouteVersion(term: 2, index: 9),
            replicas: route.replicas.map {
                RouteReplica(member: $0.member, storage: $0.storage, role: .voter)
            })
        try store.recordApplied([(records[0].group, 9, try StoredConfState(voters: [1, 8]), newer)])
        try store.recordApplied([(records[0].group, 10, nil, route)])
        loaded = try #require(try store.loadRaftReplicas().first)
        #expect(loaded.route == newer, "an older entry replaced a newer one")
        #expect(loaded.initialConf == (try StoredConfState(voters: [1])), "the initial configuration changed")
        #expect(loaded.confState == (try StoredConfState(voters: [1, 8])))
    }
}

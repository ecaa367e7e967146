import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

@Suite("Metadata: routes, configurations and applied indices")
struct MetadataRoutingTests {
    func entry(term: UInt64, index: UInt64, leader: MemberID = .none) throws -> RouteEntry {
        try RouteEntry(
            version: RouteVersion(term: Term(term), index: LogIndex(index)),
            replicas: [
                RouteReplica(member: 3, storage: try StorageName("storage-c"), role: .learner),
                RouteReplica(member: 1, storage: try StorageName("default"), role: .voter),
            ],
            leaderHint: leader)
    }

    @Test("Metadata: routing entries round-trip and persist")
    func routeRoundTrip() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let key = try fixture.key("default:4")
        let route = try entry(term: 2, index: 10, leader: 1)
        #expect(route.replicas.map(\.member) == [1, 3])
        do {
            let store = try fixture.open()
            #expect(try store.route(for: key) == nil)
            try store.updateRoute(route, for: key)
            #expect(try store.route(for: key) == route)
        }
        let store = try fixture.open()
        #expect(try store.route(for: key) == route)
        #expect(try store.routes().map(\.key) == [key])
        #expect(try store.removeRoute(for: key))
        #expect(try !store.removeRoute(for: key))
        #expect(try store.route(for: key) == nil)
    }

    @Test(
        "Metadata: a route update that is not strictly newer is refused and changes nothing",
        arguments: [(5, 20), (5, 19), (4, 99), (0, 0)] as [(UInt64, UInt64)])
    func staleRoute(term: UInt64, index: UInt64) throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = try fixture.key("default:4")
        let stored = try entry(term: 5, index: 20, leader: 3)
        try store.updateRoute(stored, for: key)
        let offered = try entry(term: term, index: index, leader: 1)
        #expect(throws: MetadataError.staleRoute(key, stored: stored.version, offered: offered.version)) {
            try store.updateRoute(offered, for: key)
        }
        #expect(try store.route(for: key) == stored)
    }

    @Test("Metadata: a newer route (higher index, or higher term with lower index) replaces the stored one")
    func newerRoute() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let key = try fixture.key("default:4")
        try store.updateRoute(try entry(term: 5, index: 20), for: key)
        try store.updateRoute(try entry(term: 5, index: 21, leader: 1), for: key)
        #expect(try store.route(for: key)?.leaderHint == 1)
        try store.updateRoute(try entry(term: 6, index: 3, leader: 3), for: key)
        #expect(try store.route(for: key)?.version == RouteVersion(term: 6, index: 3))
        #expect(try store.route(for: key)?.leaderHint == 3)
    }

    @Test("Metadata: routes list in key order with paging")
    func routeListing() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let keys = try ["default:30", "default:4", "b:9"].map { try fixture.key($0) }
        for key in keys { try store.updateRoute(try entry(term: 1, index: 1), for: key) }
        #expect(try store.routes().map(\.key.description) == ["b:9", "default:4", "default:30"])
        #expect(try store.routes(after: keys[2], limit: 1).map(\.key.description) == ["default:4"])
    }

    @Test("Metadata: invalid routes are refused at construction")
    func invalidRoutes() throws {
        let version = RouteVersion(term: 1, index: 1)
        let name = try StorageName("default")
        #expect(throws: MetadataError.self) {
            try RouteEntry(version: version, replicas: [RouteReplica(member: 0, storage: name, role: .voter)])
        }
        #expect(throws: MetadataError.self) {
            try RouteEntry(
                version: version,
                replicas: [
                    RouteReplica(member: 2, storage: name, role: .voter),
                    RouteReplica(member: 2, storage: name, role: .learner),
                ])
        }
        #expect(throws: MetadataError.self) {
            try RouteEntry(
                version: version, replicas: [RouteReplica(member: 2, storage: name, role: .voter)], leaderHint: 5)
        }
        #expect(throws: MetadataError.invalidValue("storage default appears twice in a route")) {
            try RouteEntry(
                version: version,
                replicas: [
                    RouteReplica(member: 2, storage: name, role: .voter),
                    RouteReplica(member: 3, storage: name, role: .learner),
                ])
        }
        let tooMany = try (1...65).map {
            RouteReplica(member: MemberID(UInt64($0)), storage: try StorageName("s\($0)"), role: .voter)
        }
        #expect(throws: MetadataError.invalidValue("a route has 65 replicas, more than 64")) {
            try RouteEntry(version: version, replicas: tooMany)
        }
    }

    @Test("Metadata: conf state round-trips, sorted, and requires a registered group")
    func confState() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let group: GroupID
        let conf = try StoredConfState(
            voters: [3, 1, 2], learners: [7], votersOutgoing: [1, 2, 4], learnersNext: [4], autoLeave: true)
        #expect(conf.voters == [1, 2, 3])
        do {
            let store = try fixture.open()
            group = try store.registerPartition(try fixture.key("default:2"), mode: .raft).group
            #expect(try store.confState(for: group) == nil)
            try store.setConfState(conf, for: group)
            #expect(throws: MetadataError.groupNotFound(GroupID(77))) { try store.setConfState(conf, for: GroupID(77)) }
        }
        let store = try fixture.open()
        #expect(try store.confState(for: group) == conf)
        let simple = try StoredConfState(voters: [1])
        try store.setConfState(simple, for: group)
        #expect(try store.confState(for: group) == simple)
    }

    @Test("Metadata: invalid conf states are refused at construction")
    func invalidConfStates() {
        #expect(throws: MetadataError.self) { try StoredConfState(voters: [1, 0]) }
        #expect(throws: MetadataError.self) { try StoredConfState(voters: [1, 2, 1]) }
        #expect(throws: MetadataError.self) { try StoredConfState(voters: [1, 2], learners: [2]) }
        #expect(throws: MetadataError.self) {
            try StoredConfState(voters: (1...65).map { MemberID(UInt64($0)) })
        }
    }

    @Test("Metadata: conf state encoding is the documented big-endian layout")
    func confStateEncoding() throws {
        let conf = try StoredConfState(
            voters: [1, 258], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: true)
        #expect(
            conf.encoded == [1, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0])
        #expect(try StoredConfState(decoding: conf.encoded) == conf)
    }

    @Test("Metadata: applied index moves forward, repeats, never goes back, and persists")
    func appliedIndex() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let group: GroupID
        do {
            let store = try fixture.open()
            group = try store.registerPartition(try fixture.key("default:2"), mode: .raft).group
            #expect(try store.appliedIndex(for: group) == .zero)
            try store.setAppliedIndex(5, for: group)
            try store.setAppliedIndex(5, for: group)
            try store.setAppliedIndex(9, for: group)
            #expect(throws: MetadataError.appliedIndexRegressed(group, stored: 9, offered: 8)) {
                try store.setAppliedIndex(8, for: group)
            }
            #expect(try store.appliedIndex(for: group) == 9)
            #expect(throws: MetadataError.groupNotFound(GroupID(50))) { try store.setAppliedIndex(1, for: GroupID(50)) }
        }
        let store = try fixture.open()
        #expect(try store.appliedIndex(for: group) == 9)
    }

    @Test("Metadata: a batch of applied indices is one all-or-nothing transaction")
    func appliedBatch() throws {
        let fixture = try MetadataFixture()
        defer { fixture.remove() }
        let store = try fixture.open()
        let groups = try (2..<12).map {
            try store.registerPartition(try fixture.key("default:\($0)"), mode: .raft).group
        }
        try store.setAppliedIndices(groups.enumerated().map { ($1, LogIndex(UInt64($0 + 1) * 10)) })
        for (i, group) in groups.enumerated() {
            #expect(try store.appliedIndex(for: group) == LogIndex(UInt64(i + 1) * 10))
        }

        // One regression in the middle refuses the whole batch.
        let bad: [(group: GroupID, index: LogIndex)] = [(groups[0], 100), (groups[1], 5), (groups[2], 100)]
        #expect(throws: MetadataError.appliedIndexRegressed(groups[1], stored: 20, offered: 5)) {
            try store.setAppliedIndices(bad)
        }
        // So does one unknown group.
        #expect(throws: MetadataError.groupNotFound(GroupID(500))) {
            try store.setAppliedIndices([(groups[0], 100), (GroupID(500), 1)])
        }
        #expect(try store.appliedIndex(for: groups[0]) == 10)
        #expect(try store.appliedIndex(for: groups[2]) == 30)

        // A group twice in one batch: later entries must not be lower.
        try store.setAppliedIndices([(groups[0], 11), (groups[0], 12)])
        #expect(try store.appliedIndex(for: groups[0]) == 12)
        #expect(throws: MetadataError.appliedIndexRegressed(groups[0], stored: 14, offered: 13)) {
            try store.setAppliedIndices([(groups[0], 14), (groups[0], 13)])
        }
        #expect(try store.appliedIndex(for: groups[0]) == 12)
    }
}

import Foundation
import Testing

@testable import RaftEngine

@Suite("Identity")
struct IdentityTests {
    @Test("Identity: cluster ID parses and prints the canonical form")
    func clusterIDRoundTrip() throws {
        let text = "3f2b8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a6b"
        let id = try ClusterID(parsing: text)
        #expect(id.description == text)
        #expect(id.bytes.count == 16)
        #expect(id.bytes[0] == 0x3F && id.bytes[15] == 0x6B)
        #expect(try ClusterID(parsing: text.uppercased()) == id)
        #expect(try ClusterID(bytes: id.bytes) == id)
        // Agrees with Foundation's reading of the same text.
        let foundation = UUID(uuidString: text)!
        #expect(withUnsafeBytes(of: foundation.uuid) { Array($0) } == id.bytes)
    }

    @Test(
        "Identity: malformed UUID text is refused",
        arguments: [
            "", "3f2b8c1e0d4a4e6f9a7b1c2d3e4f5a6b", "3f2b8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a6",
            "3f2b8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a6bb",
            "3f2b8c1e-0d4a-4e6f-9a7b_1c2d3e4f5a6b", "3f2b8c1g-0d4a-4e6f-9a7b-1c2d3e4f5a6b",
            "{3f2b8c1e-0d4a-4e6f-9a7b-1c2d3e4f5a}",
        ])
    func malformedUUID(text: String) {
        #expect(throws: IdentityError.invalidUUID(text)) { try ClusterID(parsing: text) }
        #expect(throws: IdentityError.invalidUUID(text)) { try NodeID(parsing: text) }
    }

    @Test("Identity: UUID bytes of the wrong length are refused")
    func uuidByteLength() {
        #expect(throws: IdentityError.invalidUUID("15 bytes")) { try NodeID(bytes: [UInt8](repeating: 1, count: 15)) }
        #expect(throws: IdentityError.invalidUUID("17 bytes")) {
            try ClusterID(bytes: [UInt8](repeating: 1, count: 17))
        }
    }

    @Test("Identity: random IDs are version 4, distinct and reproducible from a seed")
    func randomIDs() throws {
        var a = SplitMix64(seed: 42)
        var b = SplitMix64(seed: 42)
        let first = NodeID.random(using: &a)
        #expect(first == NodeID.random(using: &b))
        #expect(first != NodeID.random(using: &a))
        let system = ClusterID.random()
        #expect(system != ClusterID.random())
        for id in [first.bytes, system.bytes] {
            #expect(id[6] >> 4 == 4)
            #expect(id[8] >> 6 == 0b10)
        }
        #expect(try NodeID(parsing: first.description) == first)
    }

    @Test("Identity: storage names follow the rules", arguments: ["default", "storage-a", "s3", "a.b_c-d", "0"])
    func validStorageNames(name: String) throws {
        #expect(try StorageName(name).rawValue == name)
        #expect(try StorageName(bytes: Array(name.utf8)).rawValue == name)
    }

    @Test(
        "Identity: bad storage names are refused",
        arguments: ["", "-a", ".a", "_a", "Default", "a b", "a:b", "a/b", "a..b", "é"])
    func invalidStorageNames(name: String) {
        #expect(throws: IdentityError.self) { try StorageName(name) }
    }

    @Test("Identity: a 64-character storage name is the longest accepted")
    func storageNameLength() throws {
        #expect(try StorageName(String(repeating: "a", count: 64)).rawValue.count == 64)
        #expect(throws: IdentityError.self) { try StorageName(String(repeating: "a", count: 65)) }
    }

    @Test("Identity: incarnation 0 and partition ID 0 are refused")
    func zeroes() throws {
        #expect(throws: IdentityError.invalidIncarnation) { try StorageIncarnation(0) }
        #expect(throws: IdentityError.invalidPartitionID(0)) { try PartitionID(0) }
        #expect(try StorageIncarnation(1) == .first)
        #expect(StorageIncarnation.first.next.rawValue == 2)
        #expect(try PartitionID(1).isStorageMetadata)
        #expect(PartitionID.firstAllocated.rawValue == 2)
    }

    @Test("Identity: partition key text and byte forms round-trip")
    func partitionKeyForms() throws {
        let key = PartitionKey(authority: try StorageName("default"), partitionID: try PartitionID(42))
        #expect(key.description == "default:42")
        #expect(try PartitionKey(parsing: "default:42") == key)
        #expect(key.encoded == Array("default".utf8) + [0, 0, 0, 0, 0, 0, 0, 0, 42])
        #expect(try PartitionKey(decoding: key.encoded) == key)
    }

    @Test("Identity: partition keys order by authority, then numerically by ID")
    func partitionKeyOrder() throws {
        let keys = try ["default:300", "default:2", "default-b:1", "a:9", "default:10"].map {
            try PartitionKey(parsing: $0)
        }
        #expect(keys.sorted().map(\.description) == ["a:9", "default:2", "default:10", "default:300", "default-b:1"])
        #expect(keys.sorted() == keys.sorted { $0.encoded.lexicographicallyPrecedes($1.encoded) })
    }

    @Test(
        "Identity: malformed partition key text is refused",
        arguments: [
            "default", "default:", ":42", "default:0", "default:-1", "default:042", "Default:4", "default:4x",
            "default:99999999999999999999",
        ])
    func malformedPartitionKeyText(text: String) {
        #expect(throws: IdentityError.self) { try PartitionKey(parsing: text) }
    }

    @Test("Identity: damaged partition key bytes are refused")
    func malformedPartitionKeyBytes() throws {
        let good = PartitionKey(authority: try StorageName("default"), partitionID: try PartitionID(7)).encoded
        var noSeparator = good
        noSeparator[good.count - 9] = UInt8(ascii: "x")
        var zeroID = good
        zeroID[good.count - 1] = 0
        let cases: [[UInt8]] = [
            [], Array(good.dropLast()), noSeparator, zeroID, [0] + Array(good.suffix(8)),
            Array("DEF".utf8) + Array(good.suffix(9)),
        ]
        for bytes in cases {
            #expect(throws: IdentityError.self) { try PartitionKey(decoding: bytes) }
        }
    }

    @Test(
        "Identity: relative paths that are accepted",
        arguments: [
            "@hashed/ab/cd/0123abcd.git", "group/project.git", "a", "x/y/z", "a/.hidden", "a/..b", "raft/+raft",
        ])
    func validRelativePaths(path: String) throws {
        #expect(try RelativePath(path).rawValue == path)
        #expect(try RelativePath(bytes: Array(path.utf8)).rawValue == path)
    }

    @Test(
        "Identity: relative paths that are refused",
        arguments: [
            "", "../x", "a/../b", "a/..", "/abs", "a//b", "a/./b", ".", "./a", "a/", "a\0b", "+raft",
            "+raft/database",
        ])
    func invalidRelativePaths(path: String) {
        #expect(throws: IdentityError.self) { try RelativePath(path) }
        #expect(throws: IdentityError.self) { try RelativePath(bytes: Array(path.utf8)) }
    }

    @Test("Identity: a relative path of 4096 bytes is the longest accepted")
    func relativePathLength() throws {
        let longest = String(repeating: "abcdefg/", count: 512).dropLast() + "h"
        #expect(try RelativePath(String(longest)).rawValue.utf8.count == 4096)
        #expect(throws: IdentityError.self) { try RelativePath(String(longest) + "i") }
    }

    @Test("Identity: relative path bytes that are not UTF-8 are refused")
    func nonUTF8Path() {
        #expect(throws: IdentityError.self) { try RelativePath(bytes: [0x61, 0xFF, 0x62]) }
    }

    @Test("Identity: resolving under the root refuses a symlink that escapes it")
    func symlinkEscape() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let root = dir.file("storage")
        let outside = dir.file("outside")
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/group", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root + "/evil", withDestinationPath: outside)
        try fm.createSymbolicLink(atPath: root + "/inner", withDestinationPath: root + "/group")
        try fm.createSymbolicLink(atPath: root + "/dangling", withDestinationPath: dir.file("nowhere"))

        #expect(try RelativePath("group/project.git").resolved(under: root) == root + "/group/project.git")
        #expect(try RelativePath("new/deep/repo.git").resolved(under: root) == root + "/new/deep/repo.git")
        #expect(try RelativePath("inner/repo.git").resolved(under: root) == root + "/inner/repo.git")
        for path in ["evil/repo.git", "evil", "dangling/x.git"] {
            #expect {
                try RelativePath(path).resolved(under: root)
            } throws: { error in
                guard case .pathEscapesRoot(let p, _, _) = error as? IdentityError else { return false }
                return p == path
            }
        }
    }

    @Test("Identity: replica state transitions only move forward")
    func replicaStateTransitions() {
        #expect(ReplicaState.initializing.canMove(to: .active))
        #expect(ReplicaState.active.canMove(to: .leaving))
        #expect(ReplicaState.leaving.canMove(to: .tombstoned))
        #expect(ReplicaState.active.canMove(to: .active))
        #expect(!ReplicaState.active.canMove(to: .initializing))
        #expect(!ReplicaState.leaving.canMove(to: .active))
        #expect(!ReplicaState.tombstoned.canMove(to: .active))
        #expect(!ReplicaState.tombstoned.canMove(to: .initializing))
    }

    @Test("Identity: error messages quote control characters")
    func quotedMessages() {
        let message = IdentityError.invalidRelativePath("a\0b\n", reason: "contains a NUL byte").description
        #expect(message.contains("\\0") && !message.contains("\0") && !message.contains("\n"))
    }
}

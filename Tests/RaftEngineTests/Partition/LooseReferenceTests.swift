import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

/// Loose references written by the fast path (one create, write and rename beneath the
/// repository, no symbolic link followed) and, when that cannot be, by the careful path.
@Suite("Partition: loose reference writes")
struct LooseReferenceTests {
    static let a = try! ObjectID(hex: String(repeating: "a", count: 40))
    static let b = try! ObjectID(hex: String(repeating: "b", count: 40))

    @Test(
        "Partition: a reference is set over a stale lock file, an empty directory of its name, and a file where its directory goes"
    )
    func setReferenceSlowPaths() throws {
        let dir = try TemporaryDirectory("raftd-set-ref")
        defer { dir.remove() }
        let repo = RepositoryFiles(path: dir.file("r.git"))
        try repo.create(defaultBranch: try RefName("refs/heads/main"))
        let refs = dir.file("r.git/refs/heads")
        // A lock file a crash left.
        FileManager.default.createFile(atPath: refs + "/locked.lock", contents: Data("junk".utf8))
        try repo.setReference(try RefName("refs/heads/locked"), to: Self.a)
        #expect(try repo.reference(try RefName("refs/heads/locked")) == Self.a)
        #expect(!FileManager.default.fileExists(atPath: refs + "/locked.lock"))
        // An empty directory where the reference goes.
        try FileManager.default.createDirectory(atPath: refs + "/d/e", withIntermediateDirectories: true)
        try repo.setReference(try RefName("refs/heads/d"), to: Self.b)
        #expect(try repo.reference(try RefName("refs/heads/d")) == Self.b)
        #expect(!FileManager.default.fileExists(atPath: refs + "/d.lock"))
        // A file where a leading directory goes (re-apply of later entries that ran first).
        try repo.setReference(try RefName("refs/heads/f"), to: Self.a)
        try repo.setReference(try RefName("refs/heads/f/g"), to: Self.b)
        #expect(try repo.reference(try RefName("refs/heads/f/g")) == Self.b)
        #expect(try repo.reference(try RefName("refs/heads/f")) == nil)
        // The fast path: an existing loose reference replaced in place.
        try repo.setReference(try RefName("refs/heads/locked"), to: Self.b)
        #expect(try repo.reference(try RefName("refs/heads/locked")) == Self.b)
        // A symbolic link on the way is not followed: the careful path replaces it with a
        // directory of the repository's own, and the directory it pointed at is untouched.
        let outside = dir.file("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: refs + "/shared", withDestinationPath: outside)
        try repo.setReference(try RefName("refs/heads/shared/x"), to: Self.a)
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "wrote through the link")
        #expect(try repo.reference(try RefName("refs/heads/shared/x")) == Self.a)
        #expect(
            (try FileManager.default.attributesOfItem(atPath: refs + "/shared")[.type] as? FileAttributeType)
                == .typeDirectory)
    }

    @Test(
        "Partition: one transaction deleting a reference and creating one under its name, both ways, loose and packed"
    )
    func deleteAndCreateUnderTheName() throws {
        let dir = try TemporaryDirectory("raftd-ref-order")
        defer { dir.remove() }
        let repo = RepositoryFiles(path: dir.file("r.git"))
        try repo.create(defaultBranch: try RefName("refs/heads/main"))
        let a = try RefName("refs/heads/a")
        let ab = try RefName("refs/heads/a/b")
        try repo.updateReferences(deleting: [], setting: [(a, Self.a)])
        try repo.updateReferences(deleting: [a], setting: [(ab, Self.b)])
        #expect(try repo.references() == [ab: Self.b])
        try repo.updateReferences(deleting: [ab], setting: [(a, Self.a)])
        #expect(try repo.references() == [a: Self.a])
        // The same with the new name among 20 (written into packed-refs).
        var many: [(RefName, ObjectID)] = try (0..<20).map { (try RefName("refs/heads/m\($0)"), Self.b) }
        many.append((ab, Self.b))
        try repo.updateReferences(deleting: [a], setting: many)
        var expected = Dictionary(uniqueKeysWithValues: many)
        #expect(try repo.references() == expected)
        try repo.updateReferences(deleting: [ab], setting: [(a, Self.a)])
        expected[ab] = nil
        expected[a] = Self.a
        #expect(try repo.references() == expected)
        // Packed, the other way: a loose refs/heads/c/d deleted for refs/heads/c among 20.
        let c = try RefName("refs/heads/c")
        let cd = try RefName("refs/heads/c/d")
        try repo.updateReferences(deleting: [], setting: [(cd, Self.a)])
        var more: [(RefName, ObjectID)] = try (0..<20).map { (try RefName("refs/heads/n\($0)"), Self.a) }
        more.append((c, Self.b))
        try repo.updateReferences(deleting: [cd], setting: more)
        for (name, oid) in more { expected[name] = oid }
        #expect(try repo.references() == expected)
        #expect(RepositoryFiles.namesClash([cd], more) && RepositoryFiles.namesClash([c], [(cd, Self.a)]))
        #expect(!RepositoryFiles.namesClash([try RefName("refs/heads/cx")], [(cd, Self.a)]))
    }
}

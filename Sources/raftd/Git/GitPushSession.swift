import Foundation
import RaftConsensus
import RaftEngine

/// The proc-receive side of one push: speaks git's proc-receive protocol (version 1) with
/// `raftd-git-hook` over a socket, replicates the push, and answers git per reference.
///
/// git has already unpacked the push into the staging object directory as one pack (with
/// `transfer.fsckObjects` and its connectivity check against the repository), and updated
/// no reference (`receive.procReceiveRefs=refs`). Here the pack and all the reference
/// updates become **one** partition transaction, proposed through the leader's
/// `PartitionWriter` (which verifies each expected old value against the applied state
/// plus the proposals in flight). The answer waits for commit and local apply.
///
/// A push is all-or-nothing per transaction. With `--atomic` a stale reference fails the
/// whole push; without it, the stale references are answered `ng` and the others are
/// proposed again without them (git's own semantics for a non-atomic push).
struct GitPushSession {
    let service: GitService
    let key: PartitionKey
    let repository: RelativePath
    /// The push's object directory (`…/objects`), where git left its pack.
    let staging: String
    /// The repository's incarnation when receive-pack started.
    let identity: RepositoryIdentity

    func run(_ socket: Int32) {
        let channel = PktLineChannel(fd: socket)
        do {
            // git never starts the hook when the push failed before (a pack that does not
            // pass fsck, a connectivity error): the socket just closes.
            guard let greeting = try channel.read() else { return }
            guard case .data(let first) = greeting else {
                throw PktLineChannel.Failure(description: "proc-receive: a flush instead of the version")
            }
            let hello = [first] + (try channel.readUntilFlush(maximumPackets: 16))
            guard let version = hello.first, version.starts(with: Array("version=1".utf8)) else {
                throw PktLineChannel.Failure(description: "proc-receive: unexpected greeting")
            }
            let capabilities =
                first.split(separator: 0, maxSplits: 1).dropFirst().first.map {
                    String(decoding: $0, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).map(
                        String.init)
                } ?? []
            let atomic = capabilities.contains("atomic")
            try channel.write([PktLineChannel.line("version=1"), .flush])
            let lines = try channel.readUntilFlush()
            let answers = process(lines.map { String(decoding: $0, as: UTF8.self) }, atomic: atomic)
            try channel.write(answers.map { PktLineChannel.line($0) } + [.flush])
        } catch {
            // git reports "fail to run proc-receive hook" for every reference we did not
            // answer; the push changed nothing unless it committed above.
            service.server.logger.warning(
                "git push: the proc-receive exchange failed",
                metadata: ["error": "\(error)", "repository": "\(repository)"])
        }
    }

    /// The answers (`ok <ref>` / `ng <ref> <reason>`) for git's command lines.
    func process(_ lines: [String], atomic: Bool) -> [String] {
        var answers: [String: String] = [:]
        var order: [String] = []
        var updates: [ReferenceUpdate] = []
        for raw in lines {
            let line = raw.hasSuffix("\n") ? String(raw.dropLast()) : raw
            let fields = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard fields.count == 3 else { continue }
            let name = fields[2]
            order.append(name)
            do {
                updates.append(
                    ReferenceUpdate(
                        name: try RefName(name), old: try ObjectID(hex: fields[0]), new: try ObjectID(hex: fields[1])))
            } catch {
                answers[name] = "ng \(name) \(Self.oneLine("\(error)"))"
            }
        }
        if atomic && !answers.isEmpty {
            return order.map { answers[$0] ?? "ng \($0) atomic push failed: another reference of it is invalid" }
        }
        let packs: [PartitionOperation]
        do { packs = try stagedPacks() } catch {
            return order.map { answers[$0] ?? "ng \($0) \(Self.oneLine(error.message))" }
        }
        var remaining = updates
        while !remaining.isEmpty {
            let transaction = PartitionTransaction(packs + [.updateReferences(repository, remaining)])
            let writer = service.server.writer
            let key = self.key
            let identity = self.identity
            let result = blocking { () async -> Result<LogIndex, PartitionWriteError> in
                do throws(PartitionWriteError) {
                    return .success(
                        try await writer.commit(key, transaction, packsIndexedHere: true, unchanged: identity))
                } catch { return .failure(error) }
            }
            switch result {
            case .success:
                for update in remaining { answers[update.name.rawValue] = "ok \(update.name.rawValue)" }
                service.counters.pushesAccepted.add(1, ordering: .relaxed)
                let bytes = packs.reduce(0) { sum, op in
                    if case .attachPack(_, .inline(let pack, _)) = op { return sum + pack.count }
                    return sum
                }
                service.counters.pushedBytes.add(UInt64(bytes), ordering: .relaxed)
                remaining = []
            case .failure(.refused(.referenceStateMismatch(_, let reference, let expected, let actual)))
            where !atomic && remaining.count > 1:
                answers[reference] = "ng \(reference) \(Self.stale(expected: expected, actual: actual))"
                remaining.removeAll { $0.name.rawValue == reference }
            case .failure(.host(.timedOut)) where settled(remaining):
                // The proposal outlived the host's deadline, and then committed.
                for update in remaining { answers[update.name.rawValue] = "ok \(update.name.rawValue)" }
                service.counters.pushesAccepted.add(1, ordering: .relaxed)
                remaining = []
            case .failure(let error):
                service.counters.pushesRefused.add(1, ordering: .relaxed)
                let reason = Self.reason(error)
                var stale: String? = nil
                if case .refused(.referenceStateMismatch(_, let reference, let expected, let actual)) = error {
                    answers[reference] = "ng \(reference) \(Self.stale(expected: expected, actual: actual))"
                    stale = reference
                }
                for update in remaining where answers[update.name.rawValue] == nil {
                    answers[update.name.rawValue] =
                        "ng \(update.name.rawValue) \(stale.map { "atomic push failed: \($0) is stale; nothing was applied" } ?? reason)"
                }
                remaining = []
            }
        }
        return order.map { answers[$0] ?? "ng \($0) not processed" }
    }

    /// After a proposal that timed out (its outcome unknown): whether every update is seen
    /// applied within the next 30 s (a lease read at the leader, twice a second). False
    /// when they are not, or the references moved elsewhere: the answer stays "unknown".
    private func settled(_ updates: [ReferenceUpdate]) -> Bool {
        let reader = service.server.reader
        let key = self.key
        let repository = self.repository
        for _ in 0..<60 {
            let references = blocking { () async -> [RefName: ObjectID]?? in
                do throws(PartitionReadError) {
                    return try await reader.references(key, repository: repository, consistency: .lease).references
                } catch { return nil }
            }
            if let references = references ?? nil {
                let values = updates.map { references[$0.name] ?? .zero }
                if zip(values, updates).allSatisfy({ $0 == $1.new }) { return true }
                if zip(values, updates).contains(where: { $0 != $1.new && $0 != $1.old }) { return false }
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
        return false
    }

    /// The packs git kept in the staging directory, with their indexes, as operations.
    private func stagedPacks() throws(GitServiceError) -> [PartitionOperation] {
        let directory = staging + "/pack"
        let names: [String]
        do { names = try FileSystem.list(directory) } catch {
            throw .internalError("listing the push's pack directory: \(error)")
        }
        var operations: [PartitionOperation] = []
        for name in names.sorted() where name.hasSuffix(".pack") {
            let stem = directory + "/" + String(name.dropLast(".pack".count))
            do {
                guard let pack = try FileSystem.readFileIfExists(stem + ".pack"),
                    let index = try FileSystem.readFileIfExists(stem + ".idx")
                else { throw GitServiceError.internalError("\(name) has no index in the push's staging directory") }
                operations.append(.attachPack(repository, .inline(pack: pack, index: index)))
            } catch let error as GitServiceError {
                throw error
            } catch {
                throw .internalError("reading the pushed pack: \(error)")
            }
        }
        // git keeps one pack per push (receive.unpackLimit=1); loose objects would be lost.
        for entry in (try? FileSystem.list(staging)) ?? [] where entry.count == 2 {
            if let objects = try? FileSystem.list(staging + "/" + entry), !objects.isEmpty {
                throw .internalError("the push left loose objects in \(staging)/\(entry); refusing it")
            }
        }
        return operations
    }

    static func stale(expected: ObjectID, actual: ObjectID) -> String {
        let now = actual.isZero ? "absent" : String(actual.hex.prefix(12))
        let was = expected.isZero ? "absent" : String(expected.hex.prefix(12))
        return
            "stale info: someone pushed first (the reference is \(now) now, this push expected \(was)); fetch, then push again"
    }

    static func reason(_ error: PartitionWriteError) -> String {
        switch error {
        case .refused(let refusal):
            return oneLine("\(refusal)")
        case .host(.notLeader):
            return "this node no longer leads the repository's partition; nothing was applied: push again"
        case .host(.lostLeadership):
            return "leadership changed before the push committed; nothing was applied: push again"
        case .host(.timedOut):
            return "the push did not commit before its deadline and may still apply: fetch to see, then push again"
        case .host(let other):
            return oneLine("\(other)")
        case .timedOut(let what):
            return oneLine("timed out before proposing (\(what)); nothing was applied: push again")
        }
    }

    /// One line of at most 500 characters (git prints it after `ng`).
    static func oneLine(_ text: String) -> String {
        String(text.split(whereSeparator: \.isNewline).joined(separator: "; ").prefix(500))
    }
}

import CRaftIO
import RaftConsensus
import Synchronization

/// Why a partition write did not happen.
public enum PartitionWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Verification refused the transaction; nothing was proposed.
    case refused(PartitionError)
    /// The host could not propose or commit it (not the leader, timed out, overloaded...).
    /// `HostError.isRetryable` says whether to try again (at the leader it names).
    case host(HostError)
    /// A wait of the write path itself ran out (a new leader applying its log, a new
    /// partition electing its leader), with what it was waiting for. Retryable.
    case timedOut(String)

    public var description: String {
        switch self {
        case .refused(let error): "\(error)"
        case .host(let error): "\(error)"
        case .timedOut(let what): "timed out: \(what)"
        }
    }

    /// Whether trying again (at the leader) may succeed.
    public var isRetryable: Bool {
        switch self {
        case .refused: false
        case .host(let error): error.isRetryable
        case .timedOut: true
        }
    }
}

/// The leader's write path for the partitions of one node: validate incoming packs, verify
/// the transaction against the applied state plus what is proposed and not yet applied,
/// then propose it. So the log carries only verified changes, and of two conflicting
/// transactions exactly one enters it.
///
/// Per partition it keeps the effects of its proposals in flight. A replica that became
/// leader (or whose proposal failed in a way that leaves its fate unknown: a timeout, lost
/// leadership) first waits for its in-flight proposals to end and then applies its whole
/// log, so that entries of earlier terms (proposed, verified, by earlier leaders) are on
/// disk before it verifies anything: a new leader commits them with its first entry.
public actor PartitionWriter {
    public let host: NodeHost
    /// The node's state machine for a partition it hosts.
    let machines: @Sendable (PartitionKey) -> PartitionStateMachine?
    public let validator: PackValidator
    /// Pack validations (a git process each) at once on this node; more are refused as
    /// overloaded.
    public let maximumConcurrentValidations: Int
    /// How long a new leader waits to apply its log before it answers "timed out".
    public let catchUpMilliseconds: Int
    /// Moves attachments to the other members (nil: single-member partitions only).
    public let attachments: PartitionAttachments?

    private final class Pipeline {
        var term = Term.zero
        /// Effects of proposals in flight, by proposal number (ascending = proposal order).
        var pending: [UInt64: PartitionEffects] = [:]
        var nextProposal: UInt64 = 0
        /// The applied state may not include everything proposed: catch up first.
        var uncertain = true
        /// Grows each time `uncertain` is set: a catch-up that began before the last one
        /// does not clear it. It is also the epoch of `ProposalFence`, so it grows across
        /// writers of the process too (the monotonic clock), never back.
        var generation: UInt64 = 0

        func markUncertain() {
            uncertain = true
            generation = max(generation + 1, UInt64(MonotonicClock.system.nanoseconds))
        }
    }

    private var pipelines: [PartitionKey: Pipeline] = [:]
    private var validations = 0
    private var quarantines: UInt64 = 0

    public init(
        host: NodeHost, validator: PackValidator = PackValidator(), maximumConcurrentValidations: Int = 4,
        catchUpMilliseconds: Int = 10_000, attachments: PartitionAttachments? = nil,
        machines: @escaping @Sendable (PartitionKey) -> PartitionStateMachine?
    ) {
        self.host = host
        self.attachments = attachments
        self.machines = machines
        self.validator = validator
        self.maximumConcurrentValidations = maximumConcurrentValidations
        self.catchUpMilliseconds = catchUpMilliseconds
    }

    /// Verifies and proposes `transaction`; returns its index once it is committed and
    /// applied here. A pack travels as `.attachPack(path, .inline(pack: <the pushed pack>,
    /// index: []))`: the leader indexes and checks it (`PackValidator`) and puts git's
    /// completed pack and index in the entry; a client's own index is refused.
    ///
    /// `packsIndexedHere`: the transaction's inline packs come with the index that this
    /// node's own `git receive-pack` wrote (with `transfer.fsckObjects` and its connectivity
    /// check, into a push's staging directory; the Git HTTP service): they are taken as
    /// they are, not indexed a second time. Never set it for bytes from a client.
    ///
    /// `unchanged`: the repository must still be the incarnation named (not removed and
    /// created again, nor linked or unlinked, since), applied or pending: the pack was
    /// indexed against it.
    public func commit(
        _ key: PartitionKey, _ transaction: PartitionTransaction, packsIndexedHere: Bool = false,
        unchanged: RepositoryIdentity? = nil
    ) async throws(PartitionWriteError) -> LogIndex {
        guard let machine = machines(key) else { throw .host(.partitionNotFound(key)) }
        // The repositories packs are validated against must be the same incarnation when the
        // transaction is verified (not removed and created again, nor relinked, meanwhile).
        var guards = unchanged.map { [$0] } ?? []
        if !packsIndexedHere {
            for case .attachPack(let path, _) in transaction.operations {
                if let identity = RepositoryIdentity.current(storageRoot: machine.storageRoot, path: path) {
                    guards.append(identity)
                }
            }
        }
        // Packs first: slow (a git process), and the same in any term.
        let prepared = try await validatePacks(key, transaction, machine, indexedHere: packsIndexedHere)
        let term = try await catchUp(key, machine)

        // From here until the host holds the proposal, no suspension: verify, reserve and
        // hand over in one go, so the log holds transactions in the order they were
        // verified, each after the effects it was verified against. The host refuses the
        // proposal unless this replica still leads in the term it caught up in.
        let pipeline = pipelines[key]!
        guard pipeline.term == term, !pipeline.uncertain else { throw .host(.lostLeadership) }
        for unchanged in guards {
            let pending = pipeline.pending.values
            let touched = pending.contains { $0.cleared.contains(unchanged.path) || $0.links[unchanged.path] != nil }
            if touched
                || RepositoryIdentity.current(storageRoot: machine.storageRoot, path: unchanged.path) != unchanged
            {
                try await confirmLeadership(key, term: term)
                throw .refused(
                    .invalidOperation(
                        "repository \(unchanged.path) was removed and created again, or linked to or unlinked from a pool, while the push was on its way; nothing was applied: push again"
                    ))
            }
        }
        let effects: PartitionEffects
        do {
            effects = try PartitionVerifier(
                storageRoot: machine.storageRoot, partition: machine.partition, registry: machine.registry
            ).verify(
                prepared.transaction, pending: pipeline.pending.keys.sorted().map { pipeline.pending[$0]! },
                packObjects: prepared.objects)
        } catch {
            // A refusal is final for the client, so it must come from a leader that is
            // caught up: with the status check skipped (`catchUp`), this replica may have
            // lost its leadership since, and verified against a state that others' entries
            // have moved on. Ask the host now; then answer as a leader would, or not at all.
            try await confirmLeadership(key, term: term)
            throw .refused(error)
        }
        let bytes: [UInt8]
        do { bytes = try PartitionEntryCodec.encode(prepared.transaction) } catch { throw .refused(error) }
        // Proposals verified since the last catch-up share its epoch: if one of them is not
        // appended, the host refuses the rest of them (`ProposalFence`).
        let epoch = pipeline.generation
        let number = pipeline.nextProposal
        pipeline.nextProposal += 1
        pipeline.pending[number] = effects
        let host = self.host
        let refused = Mutex(false)
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<LogIndex, HostError>, Never>) in
            host.propose(key, bytes, fence: ProposalFence(term: term, epoch: epoch)) { answer in
                if case .failure = answer { refused.withLock { $0 = true } }
                continuation.resume(returning: answer)
            }
            // Refused before the host's worker saw it (too large, backlog, inbox full): the
            // fence could not record it, so mark the partition uncertain here, before any
            // other commit can verify on top of it, whatever the continuation does next.
            if refused.withLock({ $0 }) { pipeline.markUncertain() }
        }
        // Applied here (success), or its fate unknown: its effects stop counting either way.
        pipeline.pending[number] = nil
        switch result {
        case .success(let index):
            return index
        case .failure(let error):
            // A timeout can still commit: catch up before verifying the next.
            pipeline.markUncertain()
            throw .host(error)
        }
    }

    /// Makes sure this replica leads and its applied state includes every entry that may be
    /// in its log; returns the term.
    private func catchUp(
        _ key: PartitionKey, _ machine: PartitionStateMachine
    ) async throws(PartitionWriteError)
        -> Term
    {
        // Caught up in a term already: no status round trip to the host per write. The
        // proposal's fence carries that term, and the host refuses it unless the replica
        // still leads in exactly that term (a follower answers NotLeader with its hint);
        // any refusal marks the pipeline uncertain, so the next commit takes the full path.
        if let pipeline = pipelines[key], !pipeline.uncertain, pipeline.term != .zero {
            return pipeline.term
        }
        var status = try await replicaStatus(key)
        if status.role != .leader && status.leader == .none {
            // Nobody woke the group (all its replicas were loaded dormant): look for a
            // leader; a group whose only voter is this replica leads at once.
            host.seekLeader(of: key)
            status = try await replicaStatus(key)
        }
        guard status.role == .leader else {
            throw .host(.notLeader(leader: status.leader, node: status.memberNodes[status.leader]))
        }
        let pipeline = pipelines[key] ?? Pipeline()
        pipelines[key] = pipeline
        if pipeline.term != status.term {
            pipeline.term = status.term
            pipeline.markUncertain()
        }
        guard pipeline.uncertain else { return status.term }
        let generation = pipeline.generation
        let deadline = MonotonicClock.system.nanoseconds + catchUpMilliseconds * 1_000_000
        // First the proposals in flight end (their effects stop counting), then the log applies.
        while !pipeline.pending.isEmpty {
            guard MonotonicClock.system.nanoseconds < deadline else {
                throw .timedOut(
                    "\(key): \(pipeline.pending.count) proposals still in flight after \(catchUpMilliseconds) ms")
            }
            try? await Task.sleep(nanoseconds: 2_000_000)
        }
        let target = try await replicaStatus(key)
        guard target.role == .leader, target.term == status.term else { throw .host(.lostLeadership) }
        while machine.appliedIndex < target.lastIndex {
            guard MonotonicClock.system.nanoseconds < deadline else {
                let now = try? await host.status(of: key)
                throw .timedOut(
                    "\(key): a new leader applies its log before it verifies; applied \(machine.appliedIndex) of \(target.lastIndex) after \(catchUpMilliseconds) ms (now: \(now.map { "\($0)" } ?? "no status"))"
                )
            }
            try? await Task.sleep(nanoseconds: 2_000_000)
        }
        if pipeline.term == status.term && pipeline.generation == generation { pipeline.uncertain = false }
        return status.term
    }

    /// Throws NotLeader or lostLeadership (and marks the partition uncertain) unless this
    /// replica still leads in `term` with nothing that makes its applied state uncertain.
    private func confirmLeadership(_ key: PartitionKey, term: Term) async throws(PartitionWriteError) {
        let status = try await replicaStatus(key)
        let pipeline = pipelines[key]
        guard status.role == .leader, status.term == term, let pipeline, pipeline.term == term, !pipeline.uncertain
        else {
            pipeline?.markUncertain()
            if status.role != .leader {
                throw .host(.notLeader(leader: status.leader, node: status.memberNodes[status.leader]))
            }
            throw .host(.lostLeadership)
        }
    }

    private func replicaStatus(_ key: PartitionKey) async throws(PartitionWriteError) -> ReplicaStatus {
        do { return try await host.status(of: key) } catch { throw .host(error) }
    }

    /// The transaction with every pushed pack replaced by git's validated pack and index,
    /// and the object names of each.
    private func validatePacks(
        _ key: PartitionKey, _ transaction: PartitionTransaction, _ machine: PartitionStateMachine,
        indexedHere: Bool
    ) async throws(PartitionWriteError) -> (transaction: PartitionTransaction, objects: [[ObjectID]]) {
        var operations = transaction.operations
        var objects: [[ObjectID]] = []
        for (k, op) in operations.enumerated() {
            guard case .attachPack(let path, let reference) = op else { continue }
            if indexedHere, case .inline(let pack, let index) = reference, !index.isEmpty {
                let names: [ObjectID]
                do { names = try PackIndex(index, path: "\(path) (pushed)").names } catch { throw .refused(error) }
                objects.append(names)
                try await place(
                    key, machine, k, path, ValidatedPack(pack: pack, index: index, objects: names), &operations)
                continue
            }
            guard case .inline(let pack, let index) = reference, index.isEmpty else {
                throw .refused(.invalidPack("a pushed pack comes without an index: the leader indexes it itself"))
            }
            // The tips this transaction points the repository's references at.
            var tips: [ObjectID] = []
            for case .updateReferences(let target, let updates) in transaction.operations where target == path {
                tips += updates.filter { !$0.isDeletion }.map(\.new)
            }
            guard validations < maximumConcurrentValidations else {
                throw .host(.overloaded("\(validations) pack validations in progress"))
            }
            validations += 1
            quarantines += 1
            let quarantine = machine.directory + "/incoming/q\(quarantines)"
            let repository = machine.storageRoot + "/" + path.rawValue
            let exists = FileSystem.exists(repository + "/HEAD")
            let pool = Self.pool(of: repository)
            let validator = self.validator
            let newTips = tips
            let result = await offThePool("raftd-pack") { () -> Result<ValidatedPack, PartitionError> in
                // This thread is its own and ends with the validation: at the children's nice
                // value, so git's threads inherit it from their first instruction.
                _ = craft_set_thread_niceness(CRAFT_CHILD_NICENESS)
                return Result { () throws(PartitionError) in
                    try validator.validate(
                        pack: pack, repository: exists ? repository : nil, pool: pool, tips: newTips,
                        quarantine: quarantine)
                }
            }
            validations -= 1
            let validated: ValidatedPack
            do { validated = try result.get() } catch { throw .refused(error) }
            objects.append(validated.objects)
            try await place(key, machine, k, path, validated, &operations)
        }
        return (PartitionTransaction(operations), objects)
    }

    /// Puts a validated pack in the transaction: inline when small, else as an attachment
    /// made durable here and on a majority of the voters first.
    private func place(
        _ key: PartitionKey, _ machine: PartitionStateMachine, _ k: Int, _ path: RelativePath,
        _ validated: ValidatedPack, _ operations: inout [PartitionOperation]
    ) async throws(PartitionWriteError) {
        if validated.pack.count + validated.index.count <= PartitionTransaction.maximumInlinePackBytes {
            operations[k] = .attachPack(path, .inline(pack: validated.pack, index: validated.index))
            return
        }
        // An attachment: durable here, then on a majority of the voters, before the entry
        // naming it is proposed (the members left fetch it before they acknowledge).
        let status = try await replicaStatus(key)
        if status.members > 1 && attachments == nil {
            throw .refused(
                .invalidPack(
                    "\(validated.pack.count) bytes with its index is above the \(PartitionTransaction.maximumInlinePackBytes) bytes that travel in a log entry, and this node moves no attachments to the partition's \(status.members) members (no bulk service)"
                ))
        }
        let id: AttachmentID
        if let attachments {
            do { id = try await attachments.put(key, pack: validated.pack, index: validated.index) } catch {
                throw .refused(error)
            }
        } else {
            let store = AttachmentStore(directory: machine.directory + "/attachments")
            let stored = await offThePool("raftd-attach") { () -> Result<AttachmentID, PartitionError> in
                Result { () throws(PartitionError) in try store.put(pack: validated.pack, index: validated.index) }
            }
            do { id = try stored.get() } catch { throw .refused(error) }
        }
        if let attachments {
            // Nothing is proposed yet: a failure here is safe to retry.
            do { try await attachments.replicate(key, id, status: status) } catch { throw .timedOut("\(error)") }
        }
        operations[k] = .attachPack(
            path, .attachment(contentHash: id.hash, packBytes: id.sizes[0], indexBytes: id.sizes[1]))
    }

    /// The pool repository a repository borrows from, from its alternates file.
    private static func pool(of repository: String) -> String? {
        guard let bytes = try? FileSystem.readFileIfExists(repository + "/objects/info/alternates") else { return nil }
        let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init)
        guard let objects = line, objects.hasSuffix("/objects") else { return nil }
        return String(objects.dropLast("/objects".count))
    }
}

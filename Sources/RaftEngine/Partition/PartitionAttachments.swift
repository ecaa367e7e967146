import Logging
import RaftConsensus
import Synchronization

/// Moves attachments (large packs) between the replicas of a partition over the host's bulk
/// path: the bulk service of a node whose partitions use attachments.
///
/// - **Push before proposing.** The leader's writer stores a pack as an attachment, then
///   `replicate` asks every other member to store it (`.store`: the member pulls it in
///   chunks with `.read`) and returns once a majority of voters (the leader included) holds
///   it durably. Only then is the entry naming it proposed, so a committed entry's
///   attachment survives any minority of failures.
/// - **Fetch before acknowledging.** A member whose append carries an entry naming an
///   attachment it lacks does not take the append (`admit`): it pulls the attachment from
///   the sender and then hands the append back to its host. Raft's leader sends it again
///   anyway. So no replica acknowledges an entry whose attachment it does not hold.
///
/// A transfer is pulled in chunks of `chunkBytes`, `window` at a time, written in order to
/// temporary files and hashed as it goes; the attachment enters the store (fsync, rename,
/// directory fsync) only when all of it hashes to its name. Transfers at once are bounded
/// per node; one attachment is pulled once per replica however many appends or pushes ask.
public final class PartitionAttachments: BulkService {
    public struct Options: Sendable {
        /// Bytes per `.read` request.
        public var chunkBytes = 1 << 20
        /// `.read` requests in flight per transfer.
        public var window = 4
        /// Transfers this node receives at once; more are refused (the append path retries
        /// with the leader's next send).
        public var maximumTransfers = 8
        /// How long the leader waits for a majority to hold a pushed attachment.
        public var replicationMilliseconds = 120_000
        /// The largest attachment this node accepts from a peer (a pack the validator
        /// accepts, 1 GiB by default, with its index).
        public var maximumAttachmentBytes: UInt64 = 2 << 30

        public init() {}
    }

    /// What the service did (tests, metrics).
    public struct Counters: Sendable, Equatable {
        /// Attachments this node received and made durable.
        public var received: UInt64 = 0
        public var receivedBytes: UInt64 = 0
        /// Bytes this node served to peers.
        public var servedBytes: UInt64 = 0
        /// Appends held back until their attachment arrived.
        public var appendsHeld: UInt64 = 0
        /// Transfers that failed from every member (unreachable, refused, damaged).
        public var failedTransfers: UInt64 = 0
        /// Pulls from one member whose bytes did not hash to the attachment's name.
        public var damagedTransfers: UInt64 = 0
        /// Peer requests refused (not a member, out of bounds, busy).
        public var refusedRequests: UInt64 = 0
        /// Appends refused for good: an entry names something that cannot be an attachment.
        public var appendsRefused: UInt64 = 0
    }

    public let host: NodeHost
    public let options: Options
    /// The partition directory of this node's replica of a partition (its attachments are
    /// in `attachments/` below it), or nil when the node hosts none.
    let directories: @Sendable (PartitionKey) -> String?
    private let logger = Logger(label: "raftd.attachments")
    /// File work of transfers (reads served to peers; writes, hashing and fsyncs of what
    /// arrives) on threads of their own at a lower priority, never on Swift's cooperative
    /// pool, where it would hold up the writer and every small transaction behind it.
    private let readThread = BackgroundThread(name: "raftd-bulk-read")
    private let writeThread = BackgroundThread(name: "raftd-bulk-write")

    private struct TransferKey: Hashable {
        var partition: PartitionKey
        var attachment: AttachmentID
    }

    private final class Transfer: @unchecked Sendable {
        // Guarded by the service's state lock.
        var task: Task<Result<Void, PartitionError>, Never>?
        var held: [ReplicaKey: PeerMessage] = [:]
    }

    private struct State {
        var transfers: [TransferKey: Transfer] = [:]
        /// Attachments whose last transfer failed: (when it may start again, failures in a
        /// row). An append that keeps arriving does not restart a failing transfer at every
        /// heartbeat.
        var backoff: [TransferKey: (notBefore: Int, failures: Int)] = [:]
        /// Attachments known durable on this node's replicas: admission asks the disk once.
        /// Bounded (cleared when full; the disk answers again).
        var durable: Set<TransferKey> = []
        /// Attachments this node's writer is storing (a leader's own pushes).
        var storing: Set<TransferKey> = []
        var stopped = false
        var counters = Counters()

        mutating func remember(_ key: TransferKey) {
            if durable.count >= 65_536 { durable.removeAll() }
            durable.insert(key)
        }
    }

    private let state = Mutex(State())

    public init(
        host: NodeHost, options: Options = Options(), directories: @escaping @Sendable (PartitionKey) -> String?
    ) {
        precondition(
            (1...BulkRequest.maximumReadBytes).contains(options.chunkBytes) && (1...64).contains(options.window)
                && options.maximumTransfers >= 1 && options.replicationMilliseconds >= 1,
            "PartitionAttachments options out of bounds: \(options)")
        self.host = host
        self.options = options
        self.directories = directories
    }

    public var counters: Counters { state.withLock { $0.counters } }

    private func store(_ partition: PartitionKey) -> AttachmentStore? {
        directories(partition).map { AttachmentStore(directory: $0 + "/attachments") }
    }

    // MARK: - Follower: admission

    public func admit(_ message: PeerMessage, replica: ReplicaKey, sender: NodeID?) -> Bool {
        var named: [AttachmentID] = []
        for entry in message.message.entries {
            guard case .normal(let bytes) = entry.payload, bytes.count > 1 else { continue }
            guard let ids = PartitionEntryCodec.attachments(in: bytes) else {
                // Never acknowledged: no replica could hold what it names.
                state.withLock { $0.counters.appendsRefused &+= 1 }
                return false
            }
            for id in ids where !named.contains(id) { named.append(id) }
        }
        if named.isEmpty { return true }
        // Not knowing where the replica keeps attachments, it cannot promise them.
        guard let store = store(replica.partition) else { return false }
        let missing = named.filter { !isDurable(TransferKey(partition: replica.partition, attachment: $0), store) }
        if missing.isEmpty { return true }
        state.withLock { $0.counters.appendsHeld &+= 1 }
        guard let sender else { return false }
        for id in missing {
            _ = transfer(
                TransferKey(partition: replica.partition, attachment: id), from: sender, holding: (replica, message))
        }
        return false
    }

    /// Whether the attachment is durable on this node's replica: not while a transfer or a
    /// store of it is in progress (its files may be renamed before the directory is
    /// synced), then from memory, then from the disk (what `AttachmentStore.recover` found
    /// at open is durable).
    private func isDurable(_ key: TransferKey, _ store: AttachmentStore) -> Bool {
        func known(_ s: State) -> Bool? {
            if s.transfers[key] != nil || s.storing.contains(key) { return false }
            return s.durable.contains(key) ? true : nil
        }
        if let answer = state.withLock({ known($0) }) { return answer }
        // The disk, outside the lock; then again nothing may have started meanwhile (a
        // write that began after the first look could have renamed its files already).
        guard store.contains(key.attachment) else { return false }
        return state.withLock { s in
            if let answer = known(s) { return answer }
            s.remember(key)
            return true
        }
    }

    /// Stores a pack the leader's writer validated, as an attachment of `partition`.
    public func put(
        _ partition: PartitionKey, pack: [UInt8], index: [UInt8]
    ) async throws(PartitionError)
        -> AttachmentID
    {
        guard let store = store(partition) else {
            throw .attachment("node \(host.nodeID) has no directory for \(partition)")
        }
        let key = TransferKey(partition: partition, attachment: try AttachmentStore.id(pack: pack, index: index))
        // The same pack pushed twice at once: the second waits for the first's store.
        while !state.withLock({ $0.storing.insert(key).inserted }) {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        let result = await writeThread.run { () -> Result<AttachmentID, PartitionError> in
            Result { () throws(PartitionError) in try store.put(pack: pack, index: index) }
        }
        state.withLock { s in
            s.storing.remove(key)
            if case .success = result { s.remember(key) }
        }
        return try result.get()
    }

    // MARK: - Serving peers

    public func serve(_ request: BulkRequest, from node: NodeID) async -> BulkResponse {
        let response = await answer(request, from: node)
        if case .refused(let reason) = response {
            state.withLock { $0.counters.refusedRequests &+= 1 }
            logger.debug("refused a bulk request of node \(node): \(reason)")
        }
        return response
    }

    private func answer(_ request: BulkRequest, from node: NodeID) async -> BulkResponse {
        guard let key = request.partition else { return .refused("a request about no partition") }
        guard let status = try? await host.status(of: key) else {
            return .refused("node \(host.nodeID) hosts no replica of \(key)")
        }
        guard status.memberNodes.contains(where: { $0.key != status.replica.member && $0.value == node }) else {
            return .refused("node \(node) hosts no other member of \(key)")
        }
        guard let store = store(key) else { return .refused("node \(host.nodeID) has no directory for \(key)") }
        if case .store(_, let id) = request {
            // Pushes come from the leader this replica knows (or, when it knows none, as after
            // a restart into an idle group, from a voter's node), at most the size it takes.
            // The content hash and the size bound keep what is stored honest either way.
            let voterNodes = Set((status.voters + status.votersOutgoing).compactMap { status.memberNodes[$0] })
            let fromLeader =
                status.leader == .none ? voterNodes.contains(node) : status.memberNodes[status.leader] == node
            guard fromLeader else {
                return .refused("node \(node) does not lead \(key) as this replica knows it (term \(status.term))")
            }
            guard id.totalBytes <= options.maximumAttachmentBytes else {
                return .refused("\(id) is above the \(options.maximumAttachmentBytes) bytes this node accepts")
            }
        }
        switch request {
        case .createReplica, .transferLeadership, .snapshotChunk, .routes, .storageIncarnation:
            return .refused(
                "replica creation, leadership transfers and snapshots are the host's, not the attachment service's")
        case .read(_, let id, let offset, let length):
            guard length > 0, length <= BulkRequest.maximumReadBytes else {
                return .refused("a read of \(length) bytes (1...\(BulkRequest.maximumReadBytes))")
            }
            let read = await readThread.run { () -> Result<[UInt8], PartitionError> in
                Result { () throws(PartitionError) in try store.read(id, offset: offset, length: length) }
            }
            switch read {
            case .success(let bytes):
                state.withLock { $0.counters.servedBytes &+= UInt64(bytes.count) }
                return .data(bytes)
            case .failure(let error):
                return .refused("\(error)")
            }
        case .store(_, let id):
            guard id.sizes.count == AttachmentStore.extensions.count else {
                return .refused("\(id) is not a pack attachment (\(AttachmentStore.extensions.count) parts)")
            }
            guard let task = transfer(TransferKey(partition: key, attachment: id), from: node, holding: nil) else {
                return .refused("node \(host.nodeID) is receiving \(options.maximumTransfers) attachments already")
            }
            switch await task.value {
            case .success: return .stored
            case .failure(let error): return .refused("\(error)")
            }
        }
    }

    // MARK: - Leader: push

    /// Makes the attachment durable on a majority of the partition's voters (of both
    /// configurations while joint), counting this replica, which holds it. Members past
    /// the majority go on receiving it in the background. Throws when no majority holds it
    /// within `replicationMilliseconds`, naming what each member answered.
    public func replicate(_ key: PartitionKey, _ id: AttachmentID, status: ReplicaStatus) async throws(PartitionError) {
        let me = status.replica.member
        func quorum(_ holders: Set<MemberID>) -> Bool {
            func majority(_ voters: [MemberID]) -> Bool {
                voters.isEmpty || voters.filter(holders.contains).count > voters.count / 2
            }
            return majority(status.voters) && majority(status.votersOutgoing)
        }
        var holders: Set<MemberID> = [me]
        if quorum(holders) { return }
        let peers = status.memberNodes.filter { $0.key != me }
        guard quorum(holders.union(peers.keys)) else {
            throw .attachment("\(id): the members whose nodes are known cannot form a majority of the voters")
        }
        let (results, continuation) = AsyncStream.makeStream(of: (MemberID, Result<Void, PartitionError>)?.self)
        for (member, node) in peers {
            Task {
                let outcome: Result<Void, PartitionError>
                do {
                    switch try await host.bulkRequest(.store(partition: key, attachment: id), to: node) {
                    case .stored: outcome = .success(())
                    case .refused(let reason): outcome = .failure(.attachment("member \(member): \(reason)"))
                    case .data: outcome = .failure(.attachment("member \(member) answered a store with data"))
                    }
                } catch {
                    outcome = .failure(.attachment("member \(member): \(error)"))
                }
                continuation.yield((member, outcome))
            }
        }
        let timer = Task {
            try? await Task.sleep(nanoseconds: UInt64(options.replicationMilliseconds) * 1_000_000)
            continuation.yield(nil)
        }
        defer { timer.cancel() }
        var answers: [String] = []
        var pending = peers.count
        for await result in results {
            guard let (member, outcome) = result else {
                answers.append("\(pending) members did not answer within \(options.replicationMilliseconds) ms")
                break
            }
            pending -= 1
            switch outcome {
            case .success: holders.insert(member)
            case .failure(let error): answers.append("\(error)")
            }
            if quorum(holders) {
                continuation.finish()
                return
            }
            if pending == 0 { break }
        }
        continuation.finish()
        throw .attachment(
            "\(id) is durable on \(holders.count) of \(status.members) members, not on a majority of voters: "
                + answers.joined(separator: "; "))
    }

    /// Ends transfers in progress and takes no new ones (the host stopped).
    public func stop() {
        let tasks: [Task<Result<Void, PartitionError>, Never>]? = state.withLock { s in
            guard !s.stopped else { return nil }
            s.stopped = true
            return s.transfers.values.compactMap(\.task)
        }
        guard let tasks else { return }
        for task in tasks { task.cancel() }
        readThread.stop()
        writeThread.stop()
    }

    // MARK: - Receiving

    /// The transfer of `key` from `node`: the one in progress, or a new one; nil when this
    /// node receives as many as it may. `holding`: an append to hand back when it ends.
    private func transfer(
        _ key: TransferKey, from node: NodeID, holding: (ReplicaKey, PeerMessage)?
    ) -> Task<Result<Void, PartitionError>, Never>? {
        state.withLock { s -> Task<Result<Void, PartitionError>, Never>? in
            if let existing = s.transfers[key] {
                if let (replica, message) = holding { existing.held[replica] = message }
                return existing.task
            }
            guard !s.stopped, s.transfers.count < options.maximumTransfers else { return nil }
            if holding != nil, let b = s.backoff[key], MonotonicClock.system.nanoseconds < b.notBefore {
                return nil
            }
            let transfer = Transfer()
            if let (replica, message) = holding { transfer.held[replica] = message }
            s.transfers[key] = transfer
            let task = Task { [self] in
                // The node that asked first; when it fails (unreachable, damaged copy), the
                // other members, which may hold it too.
                var sources = [node]
                if let status = try? await host.status(of: key.partition) {
                    sources += status.memberNodes.values.filter { $0 != node && $0 != host.nodeID }.sorted()
                }
                var result: Result<Void, PartitionError> = .failure(.attachment("no member to fetch it from"))
                var failures: [String] = []
                for source in sources {
                    result = await pull(key, from: source)
                    guard case .failure(let error) = result else { break }
                    failures.append("node \(source): \(error)")
                    if case .attachment(let reason) = error, reason.contains("damaged") {
                        state.withLock { $0.counters.damagedTransfers &+= 1 }
                    }
                }
                let held: [PeerMessage] = state.withLock { s in
                    s.transfers.removeValue(forKey: key)
                    switch result {
                    case .success:
                        s.remember(key)
                        s.counters.received &+= 1
                        s.counters.receivedBytes &+= key.attachment.totalBytes
                        s.backoff.removeValue(forKey: key)
                    case .failure:
                        s.counters.failedTransfers &+= 1
                        // 100 ms, doubling, at most 10 s; the table is bounded.
                        let failures = (s.backoff[key]?.failures ?? 0) + 1
                        let delay = min(100_000_000 << min(failures - 1, 7), 10_000_000_000)
                        if s.backoff.count >= 4_096 { s.backoff.removeAll() }
                        s.backoff[key] = (MonotonicClock.system.nanoseconds + delay, failures)
                    }
                    return Array(transfer.held.values)
                }
                if case .failure = result {
                    logger.warning(
                        "receiving \(key.attachment) of \(key.partition) failed from every member: \(failures.joined(separator: "; ")); the leader's next append asks again"
                    )
                }
                if !held.isEmpty { host.redeliver(held) }
                return result
            }
            transfer.task = task
            return task
        }
    }

    /// Pulls the attachment from `node` in order, `window` chunks at a time.
    private func pull(_ key: TransferKey, from node: NodeID) async -> Result<Void, PartitionError> {
        let id = key.attachment
        guard let store = store(key.partition) else {
            return .failure(.attachment("node \(host.nodeID) has no directory for \(key.partition)"))
        }
        if store.contains(id) { return .success(()) }
        let opened = await writeThread.run { () -> Result<AttachmentReceiver, PartitionError> in
            Result { () throws(PartitionError) in try store.receive(id) }
        }
        let receiver: AttachmentReceiver
        do { receiver = try opened.get() } catch { return .failure(error) }
        let writeThread = self.writeThread
        let total = id.totalBytes
        let chunk = UInt64(options.chunkBytes)
        let offsets = Array(stride(from: UInt64(0), to: total, by: Int(chunk)))
        let host = self.host
        func fetch(_ offset: UInt64) -> Task<Result<[UInt8], PartitionError>, Never> {
            let length = Int(min(chunk, total - offset))
            return Task {
                do {
                    switch try await host.bulkRequest(
                        .read(partition: key.partition, attachment: id, offset: offset, length: length), to: node)
                    {
                    case .data(let bytes) where bytes.count == length: return .success(bytes)
                    case .data(let bytes):
                        return .failure(
                            .attachment("node \(node) sent \(bytes.count) bytes for \(length) at \(offset)"))
                    case .refused(let reason): return .failure(.attachment("node \(node) refused: \(reason)"))
                    case .stored: return .failure(.attachment("node \(node) answered a read with `stored`"))
                    }
                } catch {
                    return .failure(.attachment("\(error)"))
                }
            }
        }
        var inFlight: [Task<Result<[UInt8], PartitionError>, Never>] = []
        var next = 0
        do throws(PartitionError) {
            while next < offsets.count || !inFlight.isEmpty {
                while inFlight.count < max(1, options.window), next < offsets.count {
                    inFlight.append(fetch(offsets[next]))
                    next += 1
                }
                let bytes = try await inFlight.removeFirst().value.get()
                if Task.isCancelled { throw .attachment("the transfer was cancelled: the node stops") }
                try await writeThread.run { Result { () throws(PartitionError) in try receiver.write(bytes) } }.get()
            }
            try await writeThread.run { Result { () throws(PartitionError) in try receiver.finish() } }.get()
            return .success(())
        } catch {
            for task in inFlight { task.cancel() }
            receiver.abandon()
            return .failure(error)
        }
    }
}

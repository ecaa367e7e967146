import Logging
import RaftConsensus
import Synchronization

/// Makes, streams and stages partition snapshots for a host: its snapshot service.
///
/// - **Prepare (leader).** A point-in-time view of the partition at its applied index
///   (`PartitionStateMachine.prepareSnapshot`), on a thread of its own; the newest view per
///   replica is kept while transfers use it.
/// - **Send (leader).** The view is streamed (`SnapshotStreamWriter`: files read through
///   io_uring, zstd, checksums) in pieces of `pieceBytes` on the bulk path, one piece in
///   flight while the next is built, at most `bandwidthBytesPerSecond`, by at most
///   `maximumSending` transfers at once, on low-priority threads: heartbeats, appends and
///   the WAL never wait for it.
/// - **Receive (follower).** Pieces are checked and written into the replica's
///   `snapshot-staging/` (`SnapshotStreamReader`) by at most `maximumReceiving` transfers;
///   once the trailer checks out, the snapshot message is handed to the host, which
///   installs the staged data in its Ready pipeline. A damaged, truncated, foreign or
///   stale stream is refused and its staging removed; the old state is untouched.
/// - **Interrupted transfers restart**: a piece out of order or after a gap is refused, the
///   leader learns the send failed and sends a new snapshot later (a new transfer, whose
///   first piece replaces the old one's staging). An abandoned transfer expires after
///   `idleTimeoutMilliseconds`.
public final class PartitionSnapshots: SnapshotService {
    public struct Options: Sendable {
        /// zstd level of each chunk (1: fast; packs do not compress anyway).
        public var compressionLevel = 1
        /// File bytes per read and per compressed chunk.
        public var chunkBytes = 1 << 20
        /// Stream bytes per bulk request.
        public var pieceBytes = 1 << 20
        /// Transfers this node sends, and receives, at once.
        public var maximumSending = 2
        public var maximumReceiving = 2
        /// What all of this node's sends together may use.
        public var bandwidthBytesPerSecond: UInt64 = 1 << 30
        /// The largest partition this node accepts.
        public var maximumSnapshotBytes: UInt64 = 1 << 40
        /// A received transfer with no piece for this long is dropped.
        public var idleTimeoutMilliseconds = 60_000

        public init() {}
    }

    public struct Counters: Sendable, Equatable {
        public var prepared: UInt64 = 0
        public var sent: UInt64 = 0
        public var sendFailures: UInt64 = 0
        /// File bytes and stream bytes of completed sends.
        public var sentFileBytes: UInt64 = 0
        public var sentStreamBytes: UInt64 = 0
        /// Time spent streaming completed sends.
        public var sentNanoseconds: UInt64 = 0
        public var received: UInt64 = 0
        public var receivedStreamBytes: UInt64 = 0
        /// Transfers refused (damaged, foreign, out of order, busy).
        public var refused: UInt64 = 0
        /// Busy: more sends than `maximumSending` were asked for.
        public var sendsRefusedBusy: UInt64 = 0

        public init() {}
    }

    public let host: NodeHost
    public let clusterID: ClusterID
    public let options: Options
    let machines: @Sendable (PartitionKey) -> PartitionStateMachine?
    private let logger = Logger(label: "raftd.snapshots")
    private let prepareThread = BackgroundThread(name: "raftd-snap-prep")
    private let sendThreads: [BackgroundThread]
    private let writeThread = BackgroundThread(name: "raftd-snap-recv")
    private let bandwidth: Bandwidth

    private struct Prepared {
        let snapshot: PreparedPartitionSnapshot
        let replica: ReplicaKey
        var users = 0
        /// When a transfer last finished with it (or it was made).
        var lastUsed: Int
    }

    /// A view no transfer used for this long goes (its links pin packs a repack replaced);
    /// the leader makes a new one at the next need.
    static let idleViewNanoseconds = 120 * 1_000_000_000

    private final class Session: @unchecked Sendable {
        let transfer: UInt64
        let from: NodeID
        let reader: SnapshotStreamReader
        let message: Message
        let staged: String
        let stagedPath: String
        /// The next piece to write; pieces after it (up to the window) wait their turn.
        var next: UInt32 = 0
        var lastActivity: Int
        /// A piece is being written.
        var busy = false
        var aborted = false
        var waiters: [UInt32: CheckedContinuation<Bool, Never>] = [:]

        init(
            transfer: UInt64, from: NodeID, reader: SnapshotStreamReader, message: Message, staged: String,
            stagedPath: String, now: Int
        ) {
            self.transfer = transfer
            self.from = from
            self.reader = reader
            self.message = message
            self.staged = staged
            self.stagedPath = stagedPath
            self.lastActivity = now
        }
    }

    private struct State {
        var prepared: [UInt64: Prepared] = [:]
        var newest: [ReplicaKey: UInt64] = [:]
        var freeSendThreads: [Int]
        var sessions: [PartitionKey: Session] = [:]
        var nextID: UInt64
        var stopped = false
        var counters = Counters()
    }

    private let state: Mutex<State>

    public init(
        host: NodeHost, clusterID: ClusterID, options: Options = Options(),
        machines: @escaping @Sendable (PartitionKey) -> PartitionStateMachine?
    ) {
        precondition(
            options.chunkBytes >= 4096 && options.chunkBytes <= SnapshotFormat.maximumChunkBytes
                && options.pieceBytes >= options.chunkBytes && options.pieceBytes <= SnapshotChunk.maximumBytes / 2
                && options.maximumSending >= 1 && options.maximumReceiving >= 1
                && ZstdCompressor.levels.contains(options.compressionLevel),
            "PartitionSnapshots options out of bounds: \(options)")
        self.host = host
        self.clusterID = clusterID
        self.options = options
        self.machines = machines
        sendThreads = (0..<options.maximumSending).map { BackgroundThread(name: "raftd-snap-send\($0)") }
        bandwidth = Bandwidth(bytesPerSecond: options.bandwidthBytesPerSecond)
        var generator = SystemRandomNumberGenerator()
        state = Mutex(
            State(freeSendThreads: Array(0..<options.maximumSending), nextID: generator.next() >> 16 | 1))
    }

    public var counters: Counters { state.withLock { $0.counters } }

    // MARK: - Leader

    public func prepare(
        _ replica: ReplicaKey, stateMachine: any StateMachine,
        done: @escaping @Sendable (LogIndex?, [UInt8]) -> Void
    ) {
        guard let machine = stateMachine as? PartitionStateMachine else {
            done(nil, [])
            return
        }
        let id: UInt64? = state.withLock { s in
            guard !s.stopped else { return nil }
            s.nextID &+= 1
            return s.nextID
        }
        guard let id else {
            done(nil, [])
            return
        }
        removeIdleViews()
        prepareThread.post { [self] in
            let prepared: PreparedPartitionSnapshot
            do { prepared = try machine.prepareSnapshot(id: id) } catch {
                logger.error("preparing a snapshot of \(replica) failed: \(error)")
                done(nil, [])
                return
            }
            // The previous view of this replica goes unless a transfer still reads it.
            let stale: String? = state.withLock { s in
                s.prepared[id] = Prepared(
                    snapshot: prepared, replica: replica, lastUsed: MonotonicClock.system.nanoseconds)
                s.counters.prepared += 1
                defer { s.newest[replica] = id }
                guard let old = s.newest[replica], let previous = s.prepared[old], previous.users == 0 else {
                    return nil
                }
                s.prepared[old] = nil
                return previous.snapshot.directory
            }
            if let stale { try? FileSystem.removeTree(stale) }
            logger.info(
                "prepared a snapshot",
                metadata: [
                    "replica": "\(replica)", "index": "\(prepared.index)", "bytes": "\(prepared.totalBytes)",
                    "files": "\(prepared.items.count)", "apply_held_ms": "\(prepared.linkNanoseconds / 1_000_000)",
                ])
            done(prepared.index, Self.encode(id))
        }
    }

    public func send(_ message: PeerMessage, to node: NodeID, done: @escaping @Sendable (Bool) -> Void) {
        removeIdleViews()
        guard let snapshot = message.message.snapshot, let id = Self.decode(snapshot.data) else {
            done(false)
            return
        }
        let taken: (Int, PreparedPartitionSnapshot)? = state.withLock { s in
            guard !s.stopped, var p = s.prepared[id], let thread = s.freeSendThreads.popLast() else {
                if !s.stopped && s.prepared[id] != nil { s.counters.sendsRefusedBusy += 1 }
                return nil
            }
            p.users += 1
            s.prepared[id] = p
            return (thread, p.snapshot)
        }
        guard let (thread, prepared) = taken else {
            done(false)
            return
        }
        sendThreads[thread].post { [self] in
            let result = stream(prepared, message: message, metadata: snapshot.metadata, to: node)
            let stale: String? = state.withLock { s in
                s.freeSendThreads.append(thread)
                if let (file, stream, nanoseconds) = result {
                    s.counters.sent += 1
                    s.counters.sentFileBytes += file
                    s.counters.sentStreamBytes += stream
                    s.counters.sentNanoseconds += nanoseconds
                } else {
                    s.counters.sendFailures += 1
                }
                guard var p = s.prepared[id] else { return nil }
                p.users -= 1
                p.lastUsed = MonotonicClock.system.nanoseconds
                s.prepared[id] = p
                // A view no transfer reads that is not the replica's newest goes.
                guard p.users == 0, s.newest[p.replica] != id || s.stopped else { return nil }
                s.prepared[id] = nil
                return p.snapshot.directory
            }
            if let stale { try? FileSystem.removeTree(stale) }
            done(result != nil)
        }
    }

    /// Streams one prepared snapshot; the file and stream bytes and the time it took, or
    /// nil when it failed.
    private func stream(
        _ prepared: PreparedPartitionSnapshot, message: PeerMessage, metadata: SnapshotMetadata, to node: NodeID
    ) -> (UInt64, UInt64, UInt64)? {
        let started = MonotonicClock.system.nanoseconds
        let transfer: UInt64 = state.withLock { s in
            s.nextID &+= 1
            return s.nextID
        }
        let header = SnapshotHeader(
            cluster: clusterID, partition: message.partition, snapshotID: transfer, index: metadata.index,
            term: metadata.term, confState: metadata.confState, items: UInt32(prepared.items.count),
            totalBytes: prepared.totalBytes)
        let pipe = PiecePipe(host: host, node: node, partition: message.partition, transfer: transfer)
        var first: Message? = message.message
        var pending: [UInt8]?
        var failure: String?
        let writer: SnapshotStreamWriter
        do {
            writer = try SnapshotStreamWriter(
                level: options.compressionLevel,
                reader: try SequentialFileReader(chunkBytes: options.chunkBytes, depth: 4))
        } catch {
            logger.error("snapshot of \(message.partition): cannot start a stream: \(error)")
            return nil
        }
        var stats: SnapshotStreamStatistics?
        do {
            stats = try writer.write(header: header, items: prepared.items, pieceBytes: options.pieceBytes) { piece in
                if state.withLock({ $0.stopped }) {
                    failure = "the node is stopping"
                    return false
                }
                // One piece is held back so the last one goes out marked as last.
                if let previous = pending {
                    bandwidth.take(previous.count)
                    if let refused = pipe.send(previous, message: first, isLast: false) {
                        failure = refused
                        return false
                    }
                    first = nil
                }
                pending = piece
                return true
            }
        } catch {
            failure = "\(error)"
        }
        if failure == nil, stats != nil, let last = pending {
            bandwidth.take(last.count)
            failure = pipe.send(last, message: first, isLast: true)
        }
        if failure == nil { failure = pipe.finish() }
        guard failure == nil, let stats else {
            logger.warning(
                "snapshot transfer failed; the leader sends a new one later",
                metadata: [
                    "partition": "\(message.partition)", "to": "\(node)", "index": "\(metadata.index)",
                    "reason": "\(failure ?? "the stream stopped")",
                ])
            return nil
        }
        let seconds = Double(MonotonicClock.system.nanoseconds - started) / 1e9
        logger.info(
            "sent a snapshot",
            metadata: [
                "partition": "\(message.partition)", "to": "\(node)", "index": "\(metadata.index)",
                "bytes": "\(stats.fileBytes)", "stream_bytes": "\(stats.streamBytes)",
                "mb_per_s": "\(Int(Double(stats.fileBytes) / 1e6 / max(seconds, 1e-6)))",
            ])
        return (stats.fileBytes, stats.streamBytes, UInt64(MonotonicClock.system.nanoseconds - started))
    }

    /// Removes the views no transfer used for `idleViewNanoseconds`.
    private func removeIdleViews() {
        let now = MonotonicClock.system.nanoseconds
        let idle: [String] = state.withLock { s in
            var out: [String] = []
            for (id, p) in s.prepared where p.users == 0 && now - p.lastUsed > Self.idleViewNanoseconds {
                s.prepared[id] = nil
                if s.newest[p.replica] == id { s.newest[p.replica] = nil }
                out.append(p.snapshot.directory)
            }
            return out
        }
        guard !idle.isEmpty else { return }
        prepareThread.post { for d in idle { try? FileSystem.removeTree(d) } }
    }

    // MARK: - Follower

    public func receive(_ chunk: SnapshotChunk, from node: NodeID) async -> BulkResponse {
        let now = MonotonicClock.system.nanoseconds
        let begun: Result<Session, SnapshotStreamError>
        if chunk.sequence == 0 {
            begun = begin(chunk, from: node, now: now)
        } else {
            begun = await admit(chunk, from: node, now: now)
        }
        let session: Session
        switch begun {
        case .success(let s): session = s
        case .failure(let error):
            state.withLock { $0.counters.refused += 1 }
            return .refused("\(error)")
        }
        let outcome: Result<Bool, SnapshotStreamError> = await writeThread.run {
            Result { () throws(SnapshotStreamError) -> Bool in
                try session.reader.consume(chunk.bytes)
                guard chunk.isLast else { return false }
                try session.reader.finish()
                try? DiskFile.syncDirectory(String(session.stagedPath[..<session.stagedPath.lastIndex(of: "/")!]))
                return true
            }
        }
        switch outcome {
        case .success(let complete):
            let (deliver, waiter): (Bool?, CheckedContinuation<Bool, Never>?) = state.withLock { s in
                session.busy = false
                session.next = chunk.sequence + 1
                s.counters.receivedStreamBytes += UInt64(chunk.bytes.count)
                // The piece after this one may be waiting for its turn.
                let waiter = session.waiters.removeValue(forKey: session.next)
                if waiter != nil { session.busy = true }
                return (deliverable(session, complete: complete, in: &s), waiter)
            }
            waiter?.resume(returning: true)
            guard let deliver else { return .refused("transfer \(chunk.transfer) was replaced by a newer one") }
            if deliver {
                var message = session.message
                message.snapshot?.data = Array(session.staged.utf8)
                logger.info(
                    "received a snapshot",
                    metadata: [
                        "partition": "\(chunk.partition)", "from": "\(node)",
                        "index": "\(message.snapshot!.metadata.index)",
                        "stream_bytes": "\(session.reader.streamBytes)",
                    ])
                host.deliverSnapshot(PeerMessage(partition: chunk.partition, message: message))
            }
            return .stored
        case .failure(let error):
            abort(session, partition: chunk.partition)
            state.withLock { $0.counters.refused += 1 }
            logger.warning(
                "snapshot stream refused; the old state is untouched",
                metadata: ["partition": "\(chunk.partition)", "from": "\(node)", "reason": "\(error)"])
            return .refused("\(error)")
        }
    }

    /// Pieces of one transfer written out of order are held back, at most this many
    /// ahead of the one being written (the sender keeps fewer in flight).
    static let reorderWindow: UInt32 = 4

    /// Admits a piece after the first: at once when it is next, else when its turn comes
    /// (the bulk path may hand pieces over out of order).
    private func admit(
        _ chunk: SnapshotChunk, from node: NodeID, now: Int
    ) async -> Result<
        Session, SnapshotStreamError
    > {
        enum Admission {
            case go(Session)
            case wait(Session)
            case refuse(String)
        }
        let admission: Admission = state.withLock { s in
            guard let session = s.sessions[chunk.partition], session.transfer == chunk.transfer, session.from == node,
                !session.aborted, chunk.sequence >= session.next, chunk.sequence < session.next + Self.reorderWindow,
                session.waiters[chunk.sequence] == nil
            else { return .refuse("piece \(chunk.sequence) of transfer \(chunk.transfer) is not one expected") }
            session.lastActivity = now
            if chunk.sequence == session.next && !session.busy {
                session.busy = true
                return .go(session)
            }
            return .wait(session)
        }
        switch admission {
        case .go(let session): return .success(session)
        case .refuse(let why): return .failure(.foreign(why))
        case .wait(let session):
            let admitted = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now: Bool? = state.withLock { _ in
                    if session.aborted { return false }
                    if chunk.sequence == session.next && !session.busy {
                        session.busy = true
                        return true
                    }
                    session.waiters[chunk.sequence] = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
            return admitted ? .success(session) : .failure(.foreign("transfer \(chunk.transfer) was abandoned"))
        }
    }

    /// Whether a written piece completes a deliverable stream: nil when a newer transfer of
    /// the partition replaced this one meanwhile (it removes the staging; nothing is handed
    /// over), true when the stream is whole.
    private func deliverable(_ session: Session, complete: Bool, in s: inout State) -> Bool? {
        guard s.sessions.values.contains(where: { $0 === session }) else { return nil }
        guard complete else { return false }
        for (key, value) in s.sessions where value === session { s.sessions[key] = nil }
        s.counters.received += 1
        return true
    }

    /// Starts a session for a transfer's first piece, replacing an older transfer of the
    /// same partition.
    private func begin(_ chunk: SnapshotChunk, from node: NodeID, now: Int) -> Result<Session, SnapshotStreamError> {
        guard let message = chunk.message, let snapshot = message.snapshot else {
            return .failure(.damaged("the first piece carries no snapshot message"))
        }
        guard let machine = machines(chunk.partition) else {
            return .failure(.foreign("this node hosts no replica of \(chunk.partition)"))
        }
        let expired = expire(now: now, replacing: chunk.partition)
        for (session, partition) in expired { abort(session, partition: partition) }
        let busy = state.withLock { $0.stopped || $0.sessions.count >= options.maximumReceiving }
        if busy { return .failure(.foreign("this node receives \(options.maximumReceiving) snapshots already")) }
        let name = "\(snapshot.metadata.index.rawValue)-\(String(chunk.transfer, radix: 16))"
        let staged = machine.snapshotStagingDirectory + "/" + name
        let reader: SnapshotStreamReader
        do {
            if FileSystem.exists(staged) { try FileSystem.removeTree(staged) }
            try FileSystem.makeDirectory(staged)
            var expectation = SnapshotStreamReader.Expectation(
                cluster: clusterID, partition: chunk.partition, above: machine.appliedIndex,
                maximumBytes: options.maximumSnapshotBytes)
            expectation.metadata = snapshot.metadata
            reader = try SnapshotStreamReader(directory: staged, expectation: expectation)
        } catch let error as SnapshotStreamError {
            try? FileSystem.removeTree(staged)
            return .failure(error)
        } catch {
            try? FileSystem.removeTree(staged)
            return .failure(.io("\(error)"))
        }
        let session = Session(
            transfer: chunk.transfer, from: node, reader: reader, message: message, staged: name, stagedPath: staged,
            now: now)
        session.busy = true
        let admitted = state.withLock { s -> Bool in
            guard !s.stopped, s.sessions[chunk.partition] == nil, s.sessions.count < options.maximumReceiving else {
                return false
            }
            s.sessions[chunk.partition] = session
            return true
        }
        guard admitted else {
            try? FileSystem.removeTree(staged)
            return .failure(.foreign("another transfer of \(chunk.partition) started meanwhile"))
        }
        return .success(session)
    }

    /// Takes out sessions idle past the timeout, and the partition's own older one.
    private func expire(now: Int, replacing partition: PartitionKey) -> [(Session, PartitionKey)] {
        state.withLock { s in
            var out: [(Session, PartitionKey)] = []
            for (key, session) in s.sessions
            where key == partition
                || (!session.busy && now - session.lastActivity > options.idleTimeoutMilliseconds * 1_000_000)
            {
                s.sessions[key] = nil
                out.append((session, key))
            }
            return out
        }
    }

    private func abort(_ session: Session, partition: PartitionKey) {
        let waiters: [CheckedContinuation<Bool, Never>] = state.withLock { s in
            if s.sessions[partition] === session { s.sessions[partition] = nil }
            session.aborted = true
            defer { session.waiters = [:] }
            return Array(session.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: false) }
        let path = session.stagedPath
        writeThread.post { try? FileSystem.removeTree(path) }
    }

    public func discard(_ message: PeerMessage) {
        guard let data = message.message.snapshot?.data, let machine = machines(message.partition) else { return }
        let name = String(decoding: data, as: UTF8.self)
        guard PartitionStateMachine.isStagingName(name) else { return }
        let path = machine.snapshotStagingDirectory + "/" + name
        writeThread.post { try? FileSystem.removeTree(path) }
    }

    public func stop() {
        let (directories, sessions): ([String], [Session]) = state.withLock { s in
            s.stopped = true
            defer {
                s.prepared = [:]
                s.sessions = [:]
            }
            return (s.prepared.values.filter { $0.users == 0 }.map(\.snapshot.directory), Array(s.sessions.values))
        }
        for thread in sendThreads { thread.stop() }
        prepareThread.stop()
        for d in directories { try? FileSystem.removeTree(d) }
        for session in sessions {
            let waiters: [CheckedContinuation<Bool, Never>] = state.withLock { _ in
                session.aborted = true
                defer { session.waiters = [:] }
                return Array(session.waiters.values)
            }
            for waiter in waiters { waiter.resume(returning: false) }
            try? FileSystem.removeTree(session.stagedPath)
        }
        writeThread.stop()
    }

    static func encode(_ id: UInt64) -> [UInt8] { withUnsafeBytes(of: id.bigEndian) { Array($0) } }

    static func decode(_ data: [UInt8]) -> UInt64? {
        guard data.count == 8 else { return nil }
        return data.reduce(0) { $0 << 8 | UInt64($1) }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

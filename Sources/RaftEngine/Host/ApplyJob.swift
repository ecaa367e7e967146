import RaftConsensus

/// What an apply worker needs of a replica: its key (to route the report back) and its
/// state machine. Immutable.
package struct ApplyTarget: Sendable {
    package let key: ReplicaKey
    let stateMachine: any StateMachine
    let group: GroupID
    let storageSlot: Int
}

/// What an apply worker reports back to a replica's shard after a job.
struct AppliedReport: Sendable {
    let key: ReplicaKey
    let through: LogIndex
    let confState: ConfState?
    /// The routing entry as of the job's configuration change (recorded with it).
    var route: RouteEntry? = nil
    let entries: Int
    let failure: String?
    /// What the job was.
    let kind: ApplyJob.Kind
}

/// Committed entries for one replica's state machine, with the requests they answer. A
/// value: the shard builds it, then hands it to an apply worker whole.
package struct ApplyJob: Sendable {
    package let target: ApplyTarget
    package let entries: [Entry]
    /// The replica's handed-out index when the job was made (its last entry, or the index
    /// reads wait for); the apply worker reports it back.
    package let through: LogIndex
    /// Proposals answered by these entries: success when the term matched.
    var proposals: [(promise: Promise<LogIndex>, result: Result<LogIndex, HostError>)] = []
    /// Reads that may be served once these entries are applied.
    var reads: [(promise: Promise<LogIndex>, index: LogIndex)] = []
    /// The configuration after these entries, when one of them changed it.
    package var confState: ConfState?
    /// The routing entry derived when these entries were handed out (with `confState`).
    package var route: RouteEntry?
    let bytes: Int
    var kind = Kind.entries

    /// Entries, or one of the two steps of a snapshot install (which run on the replica's
    /// apply worker after its earlier jobs, so nothing applies beside them).
    package enum Kind: Sendable {
        case entries
        /// Replace the state with the received snapshot (`StateMachine.restore`).
        case install(Snapshot)
        /// The log reset is durable: drop what the install kept for recovery.
        case finishInstall(SnapshotMetadata)
    }

    init(target: ApplyTarget, entries: [Entry], through: LogIndex) {
        self.target = target
        self.entries = entries
        self.through = through
        var total = 0
        for entry in entries { total += entry.payloadSize }
        bytes = total
    }
}

extension ApplyJob {
    /// Answers the job's requests with `failure` without running it (an earlier job of the
    /// same replica failed).
    package func refuse(_ failure: String) {
        for p in proposals { p.promise(.failure(.replicaFailed(failure))) }
        for read in reads { read.promise(.failure(.replicaFailed(failure))) }
    }

    /// Applies the entries the state machine does not hold yet (entries at or below its
    /// applied index are re-offered after a restart and skipped), then answers the
    /// requests. Returns the failure, if the state machine failed.
    package func run() -> String? {
        let r = target
        switch kind {
        case .entries: break
        case .install(let snapshot):
            do { try r.stateMachine.restore(snapshot) } catch { return "installing \(snapshot.metadata): \(error)" }
            return nil
        case .finishInstall(let metadata):
            r.stateMachine.finishRestore(metadata)
            return nil
        }
        var failure: String?
        if let last = entries.last {
            let have = r.stateMachine.appliedIndex
            if last.index > have {
                let fresh = entries[0].index > have ? entries : entries.filter { $0.index > have }
                do { try r.stateMachine.apply(fresh) } catch { failure = error.description }
            }
        }
        if let failure {
            for p in proposals { p.promise(.failure(.replicaFailed(failure))) }
            for read in reads { read.promise(.failure(.replicaFailed(failure))) }
        } else {
            for p in proposals { p.promise(p.result) }
            for read in reads { read.promise(.success(read.index)) }
        }
        return failure
    }
}

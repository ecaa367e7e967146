import RaftConsensus

/// Snapshots and log compaction, on the shard's thread.
///
/// A leader whose follower is behind the log's start needs a snapshot: the core asks its
/// stable log, which asks the shard; the snapshot service prepares one off this thread
/// (`snapshotPrepared` reports it) and the core sends it at its next try. Its message
/// never goes in a frame: the service streams the data on the bulk path and reports the
/// outcome (`snapshotSent`). A follower's service stages what it receives and hands the
/// message over (`deliverSnapshot`); the install runs in the Ready pipeline.
extension HostShard {
    /// The core needs a snapshot of `r` and none covers the log's start.
    func snapshotNeeded(_ r: Replica) {
        guard !r.preparingSnapshot, context.snapshots.current != nil else { return }
        r.preparingSnapshot = true
        output.snapshotsToPrepare.append(r.applyTarget)
    }

    /// The service prepared a snapshot of `key` at `index` (nil: it could not); `data`
    /// names it for the service when it is sent.
    package func snapshotPrepared(_ key: ReplicaKey, index: LogIndex?, data: [UInt8]) {
        guard let r = replica(key) else { return }
        r.preparingSnapshot = false
        guard let index, !r.isFailed else { return }
        // Its term must still be in the log (compaction stops at a snapshot in flight, not
        // at one being prepared), and its configuration known.
        guard case .success(let term) = r.stableLog.term(at: index), let conf = r.confState(at: index) else { return }
        r.stableLog.prepared = Snapshot(
            metadata: SnapshotMetadata(index: index, term: term, confState: conf), data: data)
    }

    /// The service finished streaming the snapshot at `index` of `key` to `member`.
    package func snapshotSent(_ key: ReplicaKey, to member: MemberID, index: LogIndex, succeeded: Bool) {
        guard let r = replica(key) else { return }
        r.snapshotsSending = max(0, r.snapshotsSending - 1)
        if succeeded {
            counters.snapshotsSent &+= 1
            // The follower installs it now and then needs the entries after it.
            if r.snapshotHold.map({ $0.index > index }) != true { r.snapshotHold = (index, currentTick) }
        } else {
            counters.snapshotsFailed &+= 1
            // Made again at the next need (the view may be gone, or the failure its own).
            r.stableLog.prepared = nil
        }
        guard !r.isFailed, let node = resident(r) else { return }
        node.reportSnapshot(member, succeeded: succeeded)
        syncResidency(r)
        markDirty(r)
    }

    /// Compacts the logs of every replica of this shard that has enough to drop.
    func compactLogs() {
        for list in replicas.values {
            for r in list { compactLog(r) }
        }
    }

    /// The index below which `r`'s log may go (see `NodeHost.Options.compactionIntervalTicks`).
    func compactionPoint(_ r: Replica) -> LogIndex? {
        let log = r.stableLog
        let first = log.firstIndex.rawValue
        let last = log.lastIndex.rawValue
        let retention = options.logRetentionEntries
        guard !r.isFailed, r.pendingReady == nil, r.installing == nil, last + 1 >= first + options.compactionStepEntries
        else { return nil }
        // The retained window: at most `retention` entries and `logRetentionBytes` bytes.
        let byBytes = context.logs[r.storageSlot].compactionIndex(of: r.group, keepingAtMost: options.logRetentionBytes)
        let windowStart = max(last >= retention ? last - retention : 0, byBytes.rawValue)
        guard windowStart + 1 >= first + options.compactionStepEntries else { return nil }
        // Followers within the retention window keep their entries (the target is at most
        // its start); those further behind will be sent a snapshot.
        var floor = min(r.stateMachine.durableIndex, r.applied).rawValue
        if let node = r.node, node.role == .leader {
            if r.snapshotsSending > 0, let sending = log.prepared {
                floor = min(floor, sending.metadata.index.rawValue)
            }
            if let hold = r.snapshotHold {
                // A follower installing a snapshot needs the entries after it.
                let acknowledged = r.members.allSatisfy { m in
                    m.member == r.key.member || (node.progress(of: m.member)?.match ?? .zero) >= hold.index
                }
                if acknowledged || currentTick > hold.sinceTick + UInt64(options.electionTicks) * 60 {
                    r.snapshotHold = nil
                } else {
                    floor = min(floor, hold.index.rawValue)
                }
            }
        }
        let target = min(floor, windowStart)
        guard target + 1 >= first + options.compactionStepEntries else { return nil }
        return LogIndex(target)
    }

    private func compactLog(_ r: Replica) {
        guard let target = compactionPoint(r), case .success(let term) = r.stableLog.term(at: target) else { return }
        let dropped = target.rawValue - r.stableLog.firstIndex.rawValue + 1
        r.stableLog.compacted(through: target)
        counters.compactions &+= 1
        counters.entriesCompacted &+= dropped
        // A failed compaction record is a WAL failure (fatal by default); nothing to undo
        // here: the entries stay readable in the WAL, the core just no longer asks.
        context.logs[r.storageSlot].compact(group: r.group, upTo: target, term: term) { _ in }
    }
}

import Logging
import RaftConsensus

/// Builds replicas: fresh ones for `createReplicas` and dormant ones from a storage's
/// metadata at start. Shared by `NodeHost` and the host simulation.
package struct ReplicaFactory {
    let context: ShardContext
    let stateMachines: StateMachineFactory

    package init(context: ShardContext, stateMachines: @escaping StateMachineFactory) {
        self.context = context
        self.stateMachines = stateMachines
    }

    package func makeReplica(
        key: ReplicaKey, group: GroupID, storageSlot: Int, route: [RouteReplica], confState: ConfState,
        applied: LogIndex, suspended: SuspendedState? = nil, mode: ReplicationMode = .raft,
        metadata: MetadataStore? = nil, routeVersion: RouteVersion = RouteVersion(term: .zero, index: .zero),
        initialConf: ConfState? = nil
    ) throws(HostError) -> Replica {
        let entry: RouteEntry
        do { entry = try RouteEntry(version: routeVersion, replicas: route) } catch {
            throw .invalid("the routing entry of \(key): \(error)")
        }
        let machine: any StateMachine
        do {
            machine = try stateMachines(key, group, context.storageNames[storageSlot])
        } catch {
            throw .replicaFailed("opening the state machine of \(key): \(error)")
        }
        var confState = confState
        var suspended = suspended
        if let pending = machine.pendingRestore {
            // A snapshot install finished its files before a crash; its log reset may not
            // have become durable.
            try finishInstall(pending, of: key, group: group, storageSlot: storageSlot, metadata: metadata)
            machine.finishRestore(pending)
            confState = pending.confState
            if var record = suspended {
                let hs = context.logs[storageSlot].hardState(of: group) ?? .empty
                record.term = hs.term
                record.commit = max(record.commit, hs.commit)
                suspended = record
            }
        }
        // Entries are handed out again from what the state machine holds durably, when that
        // is behind the index the host recorded (a state machine may checkpoint lazily: the
        // WAL still has the entries, and apply is idempotent).
        let recordedApplied = applied
        var applied = min(applied, machine.appliedIndex)
        let base = context.logs[storageSlot].firstIndex(of: group).previous
        if applied < base {
            // The log starts after a snapshot: the state machine must hold at least that.
            guard machine.appliedIndex >= base else {
                throw .replicaFailed(
                    "\(key): the state machine holds index \(machine.appliedIndex) but the log starts after \(base); the state in between is lost: restore this replica from another one"
                )
            }
            applied = machine.appliedIndex
        }
        let members = context.members(of: confState, route: entry)
        let stable = WALStableLog(log: context.logs[storageSlot], group: group, confState: confState)
        let state: Replica.State
        if let suspended {
            state = .dormant(suspended)
        } else {
            // A fresh member: nothing stored yet, so it starts as a follower in term 0, not
            // ticked until its group's first traffic (or its paced campaign).
            let seed = context.options.seed ^ HostShard.stableHash(key.partition) ^ key.member.rawValue
            state = .quiesced(
                RawNode(config: context.raftConfig(member: key.member, applied: applied, seed: seed), log: stable))
        }
        let replica = Replica(
            key: key, group: group, storageSlot: storageSlot, storageName: context.storageNames[storageSlot],
            stateMachine: machine, stableLog: stable, members: members, state: state, applied: applied)
        replica.mode = mode
        replica.route = entry
        replica.initialConf = initialConf
        // The stored configuration is as of the stored applied index, which may be past the
        // state machine's: it describes the log from there.
        replica.baseConf = (max(recordedApplied, replica.applied), confState)
        return replica
    }

    /// Completes an install a crash interrupted: the log reset (if the WAL does not have
    /// it yet) and the configuration and index in the metadata store.
    private func finishInstall(
        _ pending: SnapshotMetadata, of key: ReplicaKey, group: GroupID, storageSlot: Int, metadata: MetadataStore?
    ) throws(HostError) {
        let log = context.logs[storageSlot]
        do {
            if log.firstIndex(of: group).previous < pending.index {
                let hs = log.hardState(of: group) ?? .empty
                let term = max(hs.term, pending.term)
                try log.append([
                    GroupWrite(
                        group: group, reset: LogReset(index: pending.index, term: pending.term),
                        hardState: HardState(
                            term: term, vote: term == hs.term ? hs.vote : .none, commit: max(hs.commit, pending.index)))
                ])
            }
            try metadata?.recordApplied([(group, pending.index, try StoredConfState(pending.confState))])
        } catch {
            throw .replicaFailed("\(key): finishing the install of snapshot \(pending.index): \(error)")
        }
        Logger(label: "raftd.host").notice(
            "finished the install of a snapshot a restart interrupted",
            metadata: ["replica": "\(key)", "index": "\(pending.index)"])
    }

    /// Every registered Raft replica of `storage`, dormant, as a follower that knows no
    /// leader: no replica campaigns at start, leaders are learned from their traffic.
    package func loadDormant(storage: Storage, slot: Int) throws(HostError) -> [Replica] {
        try load(storage: storage, slot: slot).replicas
    }

    /// `loadDormant`, with the replicas recorded as leaving their group (a removal whose
    /// deletion a restart interrupted): not run, their data is deleted again.
    package func load(storage: Storage, slot: Int) throws(HostError) -> (replicas: [Replica], leaving: [RetiredReplica])
    {
        let loaded: [MetadataStore.LoadedReplica]
        do { loaded = try storage.metadata.loadRaftReplicas() } catch {
            throw .invalid("loading the replicas of \(context.storageNames[slot]): \(error)")
        }
        let storageName = context.storageNames[slot]
        var out: [Replica] = []
        var leaving: [RetiredReplica] = []
        // Kept before any change can make the current configuration differ from it.
        do {
            try storage.metadata.recordInitialConfs(
                loaded.filter(\.initialConfInferred).compactMap { item in
                    item.initialConf.map { (item.record.group, $0) }
                })
        } catch {
            throw .invalid("recording the initial configurations on \(context.storageNames[slot]): \(error)")
        }
        out.reserveCapacity(loaded.count)
        for item in loaded {
            // An entry (derived from committed changes) that no longer names this storage:
            // a change removed the replica and a crash came before it was marked leaving.
            // Or one it names on an older incarnation of this storage (the storage left and
            // joined again): that data is not trusted, and goes.
            let current = storage.metadata.identity.incarnation
            let unnamed =
                item.route.map { route in
                    !route.replicas.contains { $0.storage == storageName && ($0.incarnation ?? current) == current }
                } ?? false
            if unnamed && item.record.state == .active, let route = item.route {
                if let old = route.replicas.first(where: { $0.storage == storageName })?.incarnation {
                    Logger(label: "raftd.host").notice(
                        "replica \(item.record.key) on \(storageName) was created on incarnation \(old) of the storage, which is at \(current) now: its data is not trusted and is deleted"
                    )
                } else {
                    Logger(label: "raftd.host").notice(
                        "replica \(item.record.key) on \(storageName) is not in its routing entry \(route.version): a committed change removed it; its data is deleted"
                    )
                }
            }
            if item.record.state == .leaving || unnamed {
                let machine: any StateMachine
                do {
                    machine = try stateMachines(
                        ReplicaKey(partition: item.record.key, member: .none), item.record.group, storageName)
                } catch {
                    throw .invalid("opening the leaving replica \(item.record.key) on \(storageName): \(error)")
                }
                leaving.append(
                    RetiredReplica(
                        key: ReplicaKey(partition: item.record.key, member: .none), group: item.record.group,
                        storageSlot: slot, stateMachine: machine, reason: "its removal was interrupted by a restart"))
                continue
            }
            guard let route = item.route, let conf = item.confState,
                let me = route.replicas.first(where: { $0.storage == storageName })
            else {
                throw .invalid(
                    "replica \(item.record.key) on \(storageName) has no route or configuration in the metadata store")
            }
            var mode = item.record.mode
            if mode == .local && (conf.voters != [me.member] || !conf.learners.isEmpty || !conf.votersOutgoing.isEmpty)
            {
                // A local replica is its group's only member; one with others runs as Raft.
                Logger(label: "raftd.host").warning(
                    "replica \(item.record.key) on \(storageName) is recorded as local but its group has other members: it runs as raft; switch it with setReplicationMode"
                )
                mode = .raft
            }
            let hs = storage.log.hardState(of: item.record.group) ?? .empty
            // Applied never passes the durable commit (commits are durable before apply).
            let record = SuspendedState(
                term: hs.term, commit: max(hs.commit, min(item.applied, storage.log.lastIndex(of: item.record.group))),
                lead: .none, isLeader: false, caughtUp: [])
            out.append(
                try makeReplica(
                    key: ReplicaKey(partition: item.record.key, member: me.member), group: item.record.group,
                    storageSlot: slot, route: route.replicas, confState: ConfState(conf), applied: item.applied,
                    suspended: record, mode: mode, metadata: storage.metadata, routeVersion: route.version,
                    initialConf: item.initialConf.map(ConfState.init)))
        }
        return (out, leaving)
    }
}

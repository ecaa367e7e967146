import RaftConsensus
import Synchronization

extension NodeHost {
    // MARK: - Ticks and liveness

    /// Ticks at most once per interval: a late tick moves the next one later, never closer
    /// (two ticks in quick succession would shorten a follower's vote refusal below the
    /// lease's assumptions; see docs/HOST.md, "Lease reads"). Slow ticks are always safe.
    func runTicks() {
        let interval = options.tickMilliseconds * 1_000_000
        var next = clock.nanoseconds + interval
        while true {
            let stop: Bool = tickLock.withLock {
                while !tickStopping {
                    let wait = next - clock.nanoseconds
                    if wait <= 0 { break }
                    _ = tickLock.wait(nanoseconds: wait)
                }
                return tickStopping
            }
            if stop { return }
            tick()
            // From when this tick was handed out (its work included), not from a grid.
            next = clock.nanoseconds + interval
        }
    }

    func tick() {
        let now = tickCount.wrappingAdd(1, ordering: .relaxed).newValue
        let parked = parkedUnits.withLock { list in
            defer { list = [] }
            return list
        }
        for resubmit in parked { resubmit() }
        let nanoseconds = clock.nanoseconds
        let events = liveness.withLock { $0.tick(now: nanoseconds) }
        for event in events {
            switch event {
            case .down(let slot):
                peerDeaths.wrappingAdd(1, ordering: .relaxed)
                logger.warning(
                    "peer node \(context.nodes[slot]) declared dead after \(options.livenessTimeoutTicks * options.tickMilliseconds) ms of silence; groups it led campaign (paced)"
                )
                for w in workers { w.post(.nodeDown(slot)) }
            case .up(let slot):
                logger.notice("peer node \(context.nodes[slot]) is alive")
                for w in workers { w.post(.nodeUp(slot)) }
            case .restarted(let slot):
                logger.notice("peer node \(context.nodes[slot]) restarted; groups it led campaign (paced)")
                for w in workers {
                    w.post(.nodeDown(slot))
                    w.post(.nodeUp(slot))
                }
            }
        }
        if now % UInt64(options.livenessIntervalTicks) == 0, let transport = transportBox.withLock({ $0 }) {
            for (slot, peer) in context.nodes.enumerated() where slot != context.selfSlot {
                transport.send(PeerFrame(from: nodeID, to: peer, senderBoot: boot, messages: []))
            }
        }
        for w in workers { w.post(.tick) }
        if now % UInt64(options.appliedFlushTicks) == 0 {
            for w in workers {
                w.post(.call { [self] shard in appliedFlusher.post(CollectionOfOne(shard.takeAppliedUpdates())) })
            }
        }
    }

    /// Records applied indices (with configurations) in each storage's metadata store, one
    /// transaction per storage for everything the workers handed over since the last time.
    func flushApplied(_ batches: [[[GroupID: AppliedUpdate]]]) {
        var merged: [[GroupID: AppliedUpdate]] = Array(repeating: [:], count: storages.count)
        for updates in batches {
            for (slot, map) in updates.enumerated() {
                for (group, update) in map {
                    var m = merged[slot][group] ?? update
                    m.index = max(m.index, update.index)
                    if let conf = update.confState { m.confState = conf }
                    if let route = update.route, m.route.map({ $0.version < route.version }) ?? true {
                        m.route = route
                    }
                    merged[slot][group] = m
                }
            }
        }
        for (slot, map) in merged.enumerated() where !map.isEmpty {
            var updates: [(group: GroupID, index: LogIndex, confState: StoredConfState?, route: RouteEntry?)] = []
            for group in map.keys.sorted() {
                let u = map[group]!
                updates.append((group, u.index, u.confState.flatMap { try? StoredConfState($0) }, u.route))
            }
            // A snapshot install records its index itself (before its log reset): an update
            // of the same group from before the install is stale and is dropped, not allowed
            // to refuse every other group's update.
            while !updates.isEmpty {
                do {
                    try storages[slot].metadata.recordApplied(updates)
                    break
                } catch {
                    if case .appliedIndexRegressed(let group, _, _) = error {
                        updates.removeAll { $0.group == group }
                        continue
                    }
                    // A replica removed from its group meanwhile: nothing to record for it.
                    if case .groupNotFound(let group) = error {
                        updates.removeAll { $0.group == group }
                        continue
                    }
                    logger.error(
                        "recording applied indices on \(context.storageNames[slot]) failed: \(error); a restart re-applies more entries"
                    )
                    break
                }
            }
        }
    }
}

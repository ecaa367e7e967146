import RaftConsensus

extension NodeHost {
    /// Tuning of a node host. Every queue and window has a bound here. Times are in ticks
    /// of `tickMilliseconds`.
    public struct Options: Sendable {
        /// Worker threads running turns; groups are split among them by partition.
        public var workers = max(1, System.coreCount)
        /// Threads applying committed entries to state machines.
        public var applyWorkers = max(1, System.coreCount / 2)
        /// Length of one tick.
        public var tickMilliseconds = 100
        /// Election timeout (randomized in [electionTicks, 2 x electionTicks)).
        public var electionTicks = 10
        public var heartbeatTicks = 1
        /// A leader quiesces its group after this many ticks without requests, once every
        /// live member is caught up.
        public var quiesceAfterIdleTicks = 3
        /// A quiesced group is shrunk to a dormant record after this many ticks (0: never).
        public var dormantAfterQuiescedTicks = 50
        /// Most groups shrunk per tick per worker (bounds the work one tick does).
        public var maxSuspensionsPerTick = 2_000
        /// One liveness frame goes to every peer node this often.
        public var livenessIntervalTicks = 2
        /// A peer node silent this long is declared dead and the groups it led campaign.
        public var livenessTimeoutTicks = 10
        /// Most campaigns started per tick on this node (split among workers, at least one
        /// each), so thousands of groups led by a dead node do not storm.
        public var maxCampaignsPerTick = 256
        /// Most groups woken per tick when a node comes back and they must catch it up.
        public var maxWakesPerTick = 512
        /// Requests (proposals, reads, changes) accepted and not yet answered, node-wide.
        public var maxPendingRequests = 65_536
        /// Events waiting in one worker's inbox; above it requests are refused and peer
        /// messages dropped.
        public var maxInboxEvents = 262_144
        /// Bytes of committed entries handed to apply workers and not yet applied; above it
        /// new proposals are refused as overloaded.
        public var maxApplyBacklogBytes = 256 << 20
        /// Largest proposal payload (it must fit a WAL batch with room to spare).
        public var maxProposalBytes = 4 << 20
        /// Apply jobs a replica may have queued; beyond it the replica takes no Readies.
        public var maxApplyJobsPerReplica = 8
        /// Bytes of committed entries one Ready hands to apply.
        public var maxApplyBytesPerReady = 4 << 20
        /// Default deadline of a request.
        public var requestTimeoutTicks = 50
        /// Applied indices are recorded in the metadata store this often (they only bound
        /// what a restart re-applies).
        public var appliedFlushTicks = 10
        /// Consensus limits per group.
        public var maxSizePerMessage = 1 << 20
        public var maxInflightMessages = 256
        public var maxUncommittedBytes = 64 << 20
        /// Seed of the host's jitter and of every group's election timer randomness.
        public var seed: UInt64 = 0
        /// Log compaction: every this many ticks, each replica's log is compacted below the
        /// smallest of what its state machine holds durably, what followers within the
        /// retention window still need, and a snapshot being sent; at least
        /// `logRetentionEntries` entries are kept, and a compaction drops at least
        /// `compactionStepEntries`. A follower further behind catches up by snapshot.
        public var compactionIntervalTicks = 10
        public var logRetentionEntries: UInt64 = 4_096
        /// And at most this many bytes of entry payloads (large entries: pushes with inline
        /// packs), whichever window is smaller.
        public var logRetentionBytes: UInt64 = 64 << 20
        public var compactionStepEntries: UInt64 = 1_024

        public init() {}

        /// The smallest election timeout, in ticks, whose lease leaves a margin (see `validate`).
        public static let minimumElectionTicks = 4

        /// Why these options cannot work, or nil.
        public func validate() -> String? {
            if workers < 1 || workers > 256 { return "workers must be in 1...256" }
            if applyWorkers < 1 || applyWorkers > 256 { return "applyWorkers must be in 1...256" }
            if tickMilliseconds < 1 { return "tickMilliseconds must be positive" }
            if heartbeatTicks < 1 || electionTicks <= heartbeatTicks {
                return "electionTicks must exceed heartbeatTicks"
            }
            // Lease reads: a follower may stop refusing votes E - 1 ticks after it last heard
            // from the leader (it can hear just before a tick), and a lease lasts E / 2 ticks
            // from the leader's ReadIndex heartbeat. The margin left for clock drift and
            // scheduling, E - 1 - E / 2, must be at least one tick: E >= 4.
            if electionTicks < Self.minimumElectionTicks {
                return
                    "electionTicks must be at least \(Self.minimumElectionTicks) (the lease needs a margin of a tick)"
            }
            if livenessIntervalTicks < 1 || livenessTimeoutTicks <= livenessIntervalTicks {
                return "livenessTimeoutTicks must exceed livenessIntervalTicks"
            }
            // Lease reads rely on it: a follower forgets a live leader no sooner than it
            // would stop refusing votes for it.
            if livenessTimeoutTicks < electionTicks { return "livenessTimeoutTicks must be at least electionTicks" }
            if maxApplyJobsPerReplica < 1 || maxApplyBytesPerReady < 1 << 16 { return "apply bounds are too small" }
            if quiesceAfterIdleTicks < 1 { return "quiesceAfterIdleTicks must be positive" }
            if compactionIntervalTicks < 1 || compactionStepEntries < 1 || logRetentionEntries < 16 {
                return
                    "compactionIntervalTicks and compactionStepEntries must be positive, logRetentionEntries at least 16"
            }
            if maxCampaignsPerTick < 1 || maxWakesPerTick < 1 || maxSuspensionsPerTick < 1 {
                return "per-tick budgets must be positive"
            }
            if maxPendingRequests < 1 || maxInboxEvents < 16 || maxApplyBacklogBytes < 1 << 16 {
                return "queue bounds are too small"
            }
            if requestTimeoutTicks < 1 || appliedFlushTicks < 1 { return "timeouts must be positive" }
            return nil
        }
    }
}

/// Facts about the machine the host sizes itself by.
enum System {
    static var coreCount: Int {
        #if canImport(Glibc)
            return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
            return 2
        #endif
    }
}

#if canImport(Glibc)
    import Glibc
#endif

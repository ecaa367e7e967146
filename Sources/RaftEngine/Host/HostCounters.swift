import RaftConsensus

/// Counters a shard keeps (read by status, tests and benchmarks).
public struct HostCounters: Sendable, Equatable {
    /// Member ticks given (only awake replicas are ticked).
    public var ticksGiven: UInt64 = 0
    public var turns: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    /// Messages for replicas this node does not host.
    public var messagesDropped: UInt64 = 0
    /// Appends dropped because they named an attachment the replica did not hold yet (the
    /// bulk service fetched it; the leader sent the append again).
    public var appendsHeldForAttachments: UInt64 = 0
    public var walWrites: UInt64 = 0
    public var entriesWritten: UInt64 = 0
    public var entriesApplied: UInt64 = 0
    /// Entries handed to apply once committed (what this node learned is committed).
    public var entriesCommitted: UInt64 = 0
    public var campaigns: UInt64 = 0
    /// The most campaigns this shard started in one tick.
    public var maxCampaignsInATick: UInt64 = 0
    /// Times a replica of this node became leader.
    public var leadershipsGained: UInt64 = 0
    public var quiesces: UInt64 = 0
    public var suspensions: UInt64 = 0
    public var rehydrations: UInt64 = 0
    public var wakesAfterReturn: UInt64 = 0
    /// Reads answered from a leader lease, without a quorum round.
    public var leaseReads: UInt64 = 0
    public var awake = 0
    public var dormant = 0
    public var replicas = 0
    /// Replicas added dormant (loaded at start).
    public var loadedDormant = 0
    /// Snapshots installed on followers here; snapshots sent (and failed) by leaders here.
    public var snapshotsInstalled: UInt64 = 0
    public var snapshotsSent: UInt64 = 0
    public var snapshotsFailed: UInt64 = 0
    /// Log compactions issued, and the entries they dropped.
    public var compactions: UInt64 = 0
    public var entriesCompacted: UInt64 = 0
    /// Entries held in replicas' logs (after compaction), in all and in the largest one.
    public var logEntries: UInt64 = 0
    public var largestLogEntries: UInt64 = 0

    public init() {}

    public mutating func add(_ o: HostCounters) {
        ticksGiven += o.ticksGiven
        turns += o.turns
        messagesSent += o.messagesSent
        messagesReceived += o.messagesReceived
        messagesDropped += o.messagesDropped
        appendsHeldForAttachments += o.appendsHeldForAttachments
        walWrites += o.walWrites
        entriesWritten += o.entriesWritten
        entriesApplied += o.entriesApplied
        entriesCommitted += o.entriesCommitted
        campaigns += o.campaigns
        maxCampaignsInATick = max(maxCampaignsInATick, o.maxCampaignsInATick)
        leadershipsGained += o.leadershipsGained
        quiesces += o.quiesces
        suspensions += o.suspensions
        rehydrations += o.rehydrations
        wakesAfterReturn += o.wakesAfterReturn
        leaseReads += o.leaseReads
        awake += o.awake
        dormant += o.dormant
        replicas += o.replicas
        loadedDormant += o.loadedDormant
        snapshotsInstalled += o.snapshotsInstalled
        snapshotsSent += o.snapshotsSent
        snapshotsFailed += o.snapshotsFailed
        compactions += o.compactions
        entriesCompacted += o.entriesCompacted
        logEntries += o.logEntries
        largestLogEntries = max(largestLogEntries, o.largestLogEntries)
    }
}

import RaftConsensus

/// Why a state machine could not apply or snapshot. A failed apply stops the replica (its
/// later entries depend on this one), never the node.
public struct StateMachineError: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// What a partition implements to receive its group's committed entries.
///
/// The host calls one replica's state machine from one apply worker at a time, in log
/// order. Entries are verified changes (the leader checked them before proposing), so apply
/// is unconditional and deterministic. The applied index is made durable together with (or
/// after) the state it describes; the host additionally records the index it knows applied
/// in the metadata store, lazily, so after a crash entries at or below `appliedIndex` may be
/// offered again and must be skipped (or re-applied to the same result).
public protocol StateMachine: AnyObject, Sendable {
    /// The highest index whose effects this state machine holds (zero when empty).
    var appliedIndex: LogIndex { get }

    /// The highest index whose effects survive a crash (a restart reopens here). The log
    /// is never compacted above it. Zero (the default): the log is never compacted.
    var durableIndex: LogIndex { get }

    /// Applies committed entries, ascending and contiguous. Entries carry application bytes
    /// (`.normal`, empty for a new leader's no-op) or a membership change (`.confChange`,
    /// already applied to the group's configuration by the host). Throwing stops the replica.
    func apply(_ entries: [Entry]) throws(StateMachineError)

    /// Replaces the state with the snapshot `snapshot` (its `data`: what the application's
    /// snapshot service staged for it), covering everything up to its index, durably: after
    /// a crash, `pendingRestore` reports it until `finishRestore`. Throwing stops the replica.
    func restore(_ snapshot: Snapshot) throws(StateMachineError)

    /// A restore whose effects are durable but which the host has not confirmed with
    /// `finishRestore` (it crashed before making the log reset durable).
    var pendingRestore: SnapshotMetadata? { get }

    /// The host made the log reset of the restore at `metadata` durable.
    func finishRestore(_ metadata: SnapshotMetadata)

    /// Deletes everything this replica holds: a committed change removed it from its
    /// group. Nothing is applied to it afterwards. Idempotent: a crash part-way through
    /// is finished by calling it again at the next start (the replica is recorded as
    /// leaving first).
    func removeAllData() throws(StateMachineError)
}

extension StateMachine {
    public var durableIndex: LogIndex { .zero }

    public func restore(_ snapshot: Snapshot) throws(StateMachineError) {
        throw StateMachineError("this state machine does not install snapshots")
    }

    public var pendingRestore: SnapshotMetadata? { nil }

    public func finishRestore(_ metadata: SnapshotMetadata) {}

    public func removeAllData() throws(StateMachineError) {}
}

/// Opens (or creates) the state machine of a replica: at creation, at restart and when a
/// dormant replica's state machine was released.
public typealias StateMachineFactory =
    @Sendable (_ replica: ReplicaKey, _ group: GroupID, _ storage: StorageName) throws(StateMachineError) ->
    any StateMachine

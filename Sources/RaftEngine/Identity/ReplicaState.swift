/// The lifecycle of a replica on this storage, as the partition registry records it.
///
/// ```
///   initializing ──> active ──> leaving ──> tombstoned
///        │              │                       ▲
///        └──────────────┴───────────────────────┘
/// ```
///
/// - `initializing`: registered, but its state is not yet complete (a new partition being
///   created, or a snapshot being installed). It must not serve reads.
/// - `active`: a normal replica (voter or learner; the role lives in the configuration).
/// - `leaving`: its removal from the group is under way; its data is still needed until
///   the removal commits.
/// - `tombstoned`: removed. The entry stays so that late messages for the old replica are
///   refused and its data is cleaned up; a tombstoned replica never comes back (a new
///   replica of the same partition is a new registration after the tombstone is removed).
///
/// Transitions only move right; staying in the same state is allowed (idempotent retry).
public enum ReplicaState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case initializing = 1
    case active = 2
    case leaving = 3
    case tombstoned = 4

    // The raw values are the on-disk codes; 0 is left unused so zeroed bytes never decode.

    /// Whether the registry may move a replica from this state to `next`.
    public func canMove(to next: ReplicaState) -> Bool {
        switch (self, next) {
        case (.initializing, _): true
        case (.active, .active), (.active, .leaving), (.active, .tombstoned): true
        case (.leaving, .leaving), (.leaving, .tombstoned): true
        case (.tombstoned, .tombstoned): true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .initializing: "initializing"
        case .active: "active"
        case .leaving: "leaving"
        case .tombstoned: "tombstoned"
        }
    }
}

import RaftConsensus

/// The work a turn produced, for the driver to carry out: one frame per peer node, one
/// WAL append per storage, apply jobs.
package struct TurnOutput {
    /// Messages per destination node slot (the own slot loops back locally).
    package var frames: [[PeerMessage]]
    /// Writes per storage slot; all belong to `token`.
    package var writes: [[GroupWrite]]
    package var token: UInt64 = 0
    package var applyJobs: [ApplyJob] = []
    /// Leaders whose followers need a snapshot prepared.
    package var snapshotsToPrepare: [ApplyTarget] = []
    /// Snapshot messages to stream to their follower's node (never in a frame).
    package var snapshotsToSend: [(message: PeerMessage, nodeSlot: Int)] = []
    /// Replicas that left their group and stopped: the host deletes their data.
    package var retired: [RetiredReplica] = []

    init(nodes: Int, storages: Int) {
        frames = Array(repeating: [], count: nodes)
        writes = Array(repeating: [], count: storages)
    }

    package var hasWrites: Bool { writes.contains { !$0.isEmpty } }
}

/// A replica that left its group (a committed change removed it, or a newer routing entry
/// showed that one did): stopped, its data to delete.
package struct RetiredReplica: Sendable {
    package var key: ReplicaKey
    package var group: GroupID
    package var storageSlot: Int
    package var stateMachine: any StateMachine
    package var reason: String
}

import RaftConsensus

/// What an application plugs into a host to make, move and stage snapshots. The host
/// decides when (the consensus core asks for a snapshot, sends one, takes one); the
/// service does the work, off the host's threads, and reports back.
public protocol SnapshotService: AnyObject, Sendable {
    /// Leader: makes a snapshot of the replica `target.key` at its state machine's applied
    /// index, off the caller's thread, then calls `done` with that index and the bytes that
    /// name it for `send` (nil index: it could not). Called on a shard's worker thread.
    func prepare(
        _ replica: ReplicaKey, stateMachine: any StateMachine,
        done: @escaping @Sendable (_ index: LogIndex?, _ data: [UInt8]) -> Void)

    /// Leader: streams the snapshot `message` carries (its data: what `prepare` returned)
    /// to node `node`, whose service stages it and hands the message to its host; then
    /// calls `done` exactly once with the outcome. Called on a shard's worker thread.
    func send(_ message: PeerMessage, to node: NodeID, done: @escaping @Sendable (_ succeeded: Bool) -> Void)

    /// Follower: takes a piece of a snapshot stream from node `from`.
    func receive(_ chunk: SnapshotChunk, from node: NodeID) async -> BulkResponse

    /// Follower: the host did not take the snapshot `message` it was handed (stale, or the
    /// replica is gone): its staged data may go.
    func discard(_ message: PeerMessage)

    /// The host stopped: end transfers, take no new ones.
    func stop()
}

/// A pending ReadIndex request on the leader.
struct PendingRead {
    var index: LogIndex
    var context: [UInt8]
    /// Requesting member (the leader itself for local reads).
    var from: MemberID
    var acks: [MemberID]
}

/// ReadIndex requests waiting for a heartbeat quorum, in arrival order. A quorum for one
/// request also confirms every earlier one (they were sent before it).
struct ReadOnlyQueue {
    private(set) var pending: [PendingRead] = []

    var isEmpty: Bool { pending.isEmpty }

    /// Registers a request unless one with the same context is pending.
    mutating func add(index: LogIndex, context: [UInt8], from: MemberID) -> Bool {
        if pending.contains(where: { $0.context == context }) { return false }
        pending.append(PendingRead(index: index, context: context, from: from, acks: []))
        return true
    }

    /// Records a heartbeat ack for `context`; returns the acks so far (nil if unknown context).
    mutating func recvAck(from id: MemberID, context: [UInt8]) -> [MemberID]? {
        guard let i = pending.firstIndex(where: { $0.context == context }) else { return nil }
        if !pending[i].acks.contains(id) { pending[i].acks.append(id) }
        return pending[i].acks
    }

    /// Removes and returns every request up to and including `context`.
    mutating func advance(through context: [UInt8]) -> [PendingRead] {
        guard let i = pending.firstIndex(where: { $0.context == context }) else { return [] }
        let done = Array(pending[...i])
        pending.removeFirst(i + 1)
        return done
    }

    /// Context of the most recent request (sent with heartbeats).
    var lastContext: [UInt8]? { pending.last?.context }

    mutating func reset() { pending = [] }
}

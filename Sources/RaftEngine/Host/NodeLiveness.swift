/// Failure detection between nodes, not groups: every node sends each peer one liveness
/// frame per interval whatever the number of groups (any frame counts), and declares a peer
/// dead when nothing arrived for `timeoutTicks`. A frame with a new boot value means the
/// peer restarted: it is reported dead (its leaderships ended) and alive again at once.
///
/// Deterministic: time is the caller's tick count.
struct NodeLiveness {
    enum Event: Equatable {
        case down(Int)
        case up(Int)
    }

    private struct Peer {
        var lastHeard: UInt64
        var boot: UInt64?
        var isAlive = true
    }

    let timeoutTicks: UInt64
    private var peers: [Peer]
    private var events: [Event] = []

    let selfSlot: Int

    /// Peers start alive, heard at `now`: a starting node gives them a full timeout. The
    /// node's own slot is never reported.
    init(peerCount: Int, selfSlot: Int, timeoutTicks: Int, now: UInt64) {
        precondition(timeoutTicks > 0)
        self.timeoutTicks = UInt64(timeoutTicks)
        self.selfSlot = selfSlot
        peers = Array(repeating: Peer(lastHeard: now), count: peerCount)
    }

    /// Records a frame from `peer` at `now`. Returns false for a frame of an older boot of
    /// the peer (boot values grow with each start): it is late traffic of a dead process,
    /// to be dropped, not a sign of life.
    @discardableResult
    mutating func heard(from peer: Int, boot: UInt64, now: UInt64) -> Bool {
        var p = peers[peer]
        if let known = p.boot, boot < known { return false }
        p.lastHeard = now
        if let known = p.boot, known != boot {
            if p.isAlive { events.append(.down(peer)) }
            events.append(.up(peer))
            p.isAlive = true
        } else if !p.isAlive {
            events.append(.up(peer))
            p.isAlive = true
        }
        p.boot = boot
        peers[peer] = p
        return true
    }

    /// Declares peers dead whose silence reached the timeout; returns every event since the
    /// last call, in order.
    mutating func tick(now: UInt64) -> [Event] {
        for i in peers.indices where i != selfSlot && peers[i].isAlive && now >= peers[i].lastHeard + timeoutTicks {
            peers[i].isAlive = false
            events.append(.down(i))
        }
        defer { events = [] }
        return events
    }

    func isAlive(_ peer: Int) -> Bool { peers[peer].isAlive }
}

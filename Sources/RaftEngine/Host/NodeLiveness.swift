/// Failure detection between nodes, not groups: every node sends each peer one liveness
/// frame per interval whatever the number of groups (any frame counts), and declares a peer
/// dead when nothing arrived for `timeoutNanoseconds` of monotonic time. A frame with a new
/// boot value means the peer restarted: it is reported dead (its leaderships ended) and
/// alive again at once.
///
/// Time is real time, not ticks: ticks are merged by busy workers and skipped by a stalled
/// tick thread, so a count of them says little about how long a peer was silent. When the
/// checks themselves stall (this process was not scheduled for a while), the stall is not
/// counted as the peers' silence: frames may be waiting unread in this node's own queues.
///
/// Deterministic: time is the caller's.
package struct NodeLiveness {
    package enum Event: Equatable {
        /// Silent past the timeout.
        case down(Int)
        /// Heard again after `down`.
        case up(Int)
        /// A frame with a new boot value from a peer thought alive: it restarted, so it
        /// leads nothing any more (act as `down` then `up`).
        case restarted(Int)
    }

    private struct Peer {
        var lastHeardNanoseconds: Int
        var boot: UInt64?
        var isAlive = true
        /// When a frame really last came (nil: never), for reports; `lastHeardNanoseconds`
        /// is credited with this node's own stalls and starts at `init`.
        var lastFrameNanoseconds: Int?
    }

    let timeoutNanoseconds: Int
    let selfSlot: Int
    private var peers: [Peer]
    private var events: [Event] = []
    /// When `tick` last ran.
    private var lastCheckNanoseconds: Int

    /// Peers start alive, heard at `now`: a starting node gives them a full timeout. The
    /// node's own slot is never reported.
    package init(peerCount: Int, selfSlot: Int, timeoutNanoseconds: Int, now: Int) {
        precondition(timeoutNanoseconds > 0)
        self.timeoutNanoseconds = timeoutNanoseconds
        self.selfSlot = selfSlot
        peers = Array(repeating: Peer(lastHeardNanoseconds: now), count: peerCount)
        lastCheckNanoseconds = now
    }

    /// Records a frame from `peer` at `now`. Returns false for a frame of an older boot of
    /// the peer (boot values grow with each start): it is late traffic of a dead process,
    /// to be dropped, not a sign of life.
    @discardableResult
    package mutating func heard(from peer: Int, boot: UInt64, now: Int) -> Bool {
        var p = peers[peer]
        if let known = p.boot, boot < known { return false }
        p.lastHeardNanoseconds = max(p.lastHeardNanoseconds, now)
        p.lastFrameNanoseconds = max(p.lastFrameNanoseconds ?? now, now)
        if let known = p.boot, known != boot {
            events.append(p.isAlive ? .restarted(peer) : .up(peer))
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
    /// last call, in order. A gap of more than half the timeout since the previous check is
    /// this node's own stall: it is credited to every peer.
    package mutating func tick(now: Int) -> [Event] {
        let gap = now - lastCheckNanoseconds
        lastCheckNanoseconds = max(lastCheckNanoseconds, now)
        if gap > timeoutNanoseconds / 2 {
            // Never past now: a peer heard during the stall must not get a head start
            // (it could die right after and go unnoticed for as long as the stall lasted).
            for i in peers.indices {
                peers[i].lastHeardNanoseconds = min(peers[i].lastHeardNanoseconds + gap, now)
            }
        }
        for i in peers.indices
        where i != selfSlot && peers[i].isAlive && now >= peers[i].lastHeardNanoseconds + timeoutNanoseconds {
            peers[i].isAlive = false
            events.append(.down(i))
        }
        defer { events = [] }
        return events
    }

    package func isAlive(_ peer: Int) -> Bool { peers[peer].isAlive }

    /// Nanoseconds since a frame last came from `peer` (never negative); nil when none came.
    package func silence(of peer: Int, now: Int) -> Int? { peers[peer].lastFrameNanoseconds.map { max(0, now - $0) } }
}

import RaftEngine
import Synchronization

/// A network inside one process, for tests, simulations and benchmarks: hosts register a
/// receiver and get a `Transport`; frames are handed to the receiver on the sender's thread
/// (a receiver only enqueues). Links can be cut one way or both, and nodes taken off the
/// network, to model partitions and crashes.
public final class InMemoryNetwork: Sendable {
    private struct State {
        var receivers: [NodeID: any FrameReceiver] = [:]
        /// Directed links that drop everything: (from, to).
        var cut: Set<[NodeID]> = []
        /// Directed links whose bulk path alone is down (the network transport's separate
        /// bulk connection): (from, to).
        var bulkCut: Set<[NodeID]> = []
    }

    /// Counters of what crossed the network.
    public struct Counters: Sendable, Equatable {
        public var frames = 0
        public var messages = 0
        public var dropped = 0
        public var bulkRequests = 0
        /// Bytes of bulk data answered.
        public var bulkBytes = 0
    }

    private let state = Mutex(State())
    private let counted = Mutex(Counters())

    public init() {}

    /// Connects `node`: frames to it reach `receiver` from now on. Returns the node's transport.
    public func attach(_ node: NodeID, receiver: any FrameReceiver) -> any Transport {
        state.withLock { $0.receivers[node] = receiver }
        return Endpoint(network: self, node: node)
    }

    /// Takes `node` off the network (a crash): frames to it are dropped.
    public func detach(_ node: NodeID) { _ = state.withLock { $0.receivers.removeValue(forKey: node) } }

    /// Cuts or restores the link from `a` to `b` (one way).
    public func setLink(from a: NodeID, to b: NodeID, up: Bool) {
        state.withLock {
            if up { $0.cut.remove([a, b]) } else { $0.cut.insert([a, b]) }
        }
    }

    /// Cuts or restores only the bulk path from `a` to `b` (one way); frames still flow.
    public func setBulkLink(from a: NodeID, to b: NodeID, up: Bool) {
        state.withLock {
            if up { $0.bulkCut.remove([a, b]) } else { $0.bulkCut.insert([a, b]) }
        }
    }

    /// Isolates `node` from every other node (both ways), or heals it.
    public func isolate(_ node: NodeID, from others: [NodeID], _ isolated: Bool = true) {
        for other in others where other != node {
            setLink(from: node, to: other, up: !isolated)
            setLink(from: other, to: node, up: !isolated)
        }
    }

    public var counters: Counters { counted.withLock { $0 } }

    private func deliver(_ frame: PeerFrame) -> Bool {
        let receiver: (any FrameReceiver)? = state.withLock {
            $0.cut.contains([frame.from, frame.to]) ? nil : $0.receivers[frame.to]
        }
        guard let receiver else {
            counted.withLock { $0.dropped += 1 }
            return false
        }
        counted.withLock {
            $0.frames += 1
            $0.messages += frame.messages.count
        }
        receiver.receive(frame)
        return true
    }

    /// A bulk request: answered by the receiver in the caller's task (the in-process
    /// stand-in for the network transport's bulk connection). Cut links and detached nodes
    /// are unreachable, as for frames.
    private func request(_ request: BulkRequest, from: NodeID, to: NodeID) async throws(BulkError) -> BulkResponse {
        let receiver: (any FrameReceiver)? = state.withLock {
            $0.cut.contains([from, to]) || $0.bulkCut.contains([from, to]) ? nil : $0.receivers[to]
        }
        guard let receiver else { throw .unreachable(to) }
        counted.withLock { $0.bulkRequests += 1 }
        let response = await receiver.serve(request, from: from)
        // The answer crosses the link back: a link cut meanwhile loses it.
        guard
            state.withLock({
                !$0.cut.contains([to, from]) && !$0.bulkCut.contains([to, from]) && $0.receivers[from] != nil
            })
        else {
            throw .unreachable(to)
        }
        if case .data(let bytes) = response { counted.withLock { $0.bulkBytes += bytes.count } }
        return response
    }

    private final class Endpoint: Transport {
        let network: InMemoryNetwork
        let node: NodeID

        init(network: InMemoryNetwork, node: NodeID) {
            self.network = network
            self.node = node
        }

        func send(_ frame: PeerFrame) -> Bool {
            precondition(frame.from == node, "a transport sends only its own node's frames")
            return network.deliver(frame)
        }

        func request(_ request: BulkRequest, to: NodeID) async throws(BulkError) -> BulkResponse {
            try await network.request(request, from: node, to: to)
        }
    }
}

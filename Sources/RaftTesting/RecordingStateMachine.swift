import RaftConsensus
import RaftEngine
import Synchronization

/// A state machine that records what it applies, checks the order, and folds every entry
/// into a checksum: the stand-in for a partition in tests, the demo and the agreement
/// checker (`LocalCluster.checkAgreement`).
public final class RecordingStateMachine: StateMachine, Sendable {
    private struct State {
        var last = LogIndex.zero
        var checksum: UInt64 = 0xcbf2_9ce4_8422_2325
        var writes: [(index: LogIndex, data: [UInt8])] = []
        var violations: [String] = []
    }
    private let state = Mutex(State())
    /// An entry with exactly these bytes fails to apply (tests of apply failures).
    private let poison = Mutex<[UInt8]?>(nil)

    public init() {}

    public var appliedIndex: LogIndex { state.withLock { $0.last } }
    /// Non-empty application entries, in order, with their indexes.
    public var writes: [(index: LogIndex, data: [UInt8])] { state.withLock { $0.writes } }
    /// Applies out of order (each one a bug in the host).
    public var violations: [String] { state.withLock { $0.violations } }
    /// FNV-1a over every applied write's bytes, in order.
    public var checksum: UInt64 { state.withLock { $0.checksum } }

    public func contains(_ data: [UInt8]) -> Bool { state.withLock { $0.writes.contains { $0.data == data } } }

    /// From now on, an entry with exactly `bytes` fails to apply.
    public func failOn(_ bytes: [UInt8]?) { poison.withLock { $0 = bytes } }

    public func apply(_ entries: [Entry]) throws(StateMachineError) {
        let poison = self.poison.withLock { $0 }
        let failed: LogIndex? = state.withLock { s in
            for e in entries {
                if case .normal(let data) = e.payload, let poison, data == poison { return e.index }
                if e.index != s.last.next { s.violations.append("applied \(e.index) after \(s.last)") }
                s.last = e.index
                guard case .normal(let data) = e.payload, !data.isEmpty else { continue }
                s.writes.append((e.index, data))
                for b in data {
                    s.checksum ^= UInt64(b)
                    s.checksum = s.checksum &* 0x100_0000_01b3
                }
            }
            return nil
        }
        if let failed { throw StateMachineError("entry \(failed) is poisoned (test)") }
    }
}

/// Applies by counting: the cheapest state machine (benchmarks measure the host, not it).
public final class CountingStateMachine: StateMachine, Sendable {
    private let last = Atomic<UInt64>(0)

    public init() {}

    public var appliedIndex: LogIndex { LogIndex(last.load(ordering: .relaxed)) }

    public func apply(_ entries: [Entry]) throws(StateMachineError) {
        last.store(entries.last!.index.rawValue, ordering: .relaxed)
    }
}

/// The state machines of every node of a local cluster, kept across restarts of a node, as
/// durable state machines would be.
public final class MachineRegistry<Machine: StateMachine>: Sendable {
    private let all = Mutex<[Int: [ReplicaKey: Machine]]>([:])
    /// The storage each machine was made with: a restarted node opens new storages, and a
    /// machine that uses its storage is opened again with it (as a real restart reopens
    /// its state from disk).
    private let madeWith = Mutex<[Int: [ReplicaKey: ObjectIdentifier]]>([:])
    private let make: @Sendable (Int, ReplicaKey, Storage?) -> Machine
    private let usesStorage: Bool

    public init(_ make: @escaping @Sendable () -> Machine) {
        self.make = { _, _, _ in make() }
        usesStorage = false
    }

    /// Machines that depend on where they live (node and replica), e.g. a partition's
    /// repositories under the node's storage root.
    public init(perReplica make: @escaping @Sendable (Int, ReplicaKey) -> Machine) {
        self.make = { node, replica, _ in make(node, replica) }
        usesStorage = false
    }

    /// Machines that also use the node's storage (a partition registers its repositories in
    /// the storage's metadata). The host creates them, passing the storage.
    public init(perReplicaWithStorage make: @escaping @Sendable (Int, ReplicaKey, Storage) -> Machine) {
        self.make = { node, replica, storage in
            guard let storage else {
                preconditionFailure("the machine of \(replica) on node \(node) is made by its host, with its storage")
            }
            return make(node, replica, storage)
        }
        usesStorage = true
    }

    /// The machine of `replica` on node `node`, created on first use.
    public func machine(node: Int, replica: ReplicaKey, storage: Storage? = nil) -> Machine {
        all.withLock { m in
            let identity = storage.map(ObjectIdentifier.init)
            let sameStorage = !usesStorage || madeWith.withLock { $0[node]?[replica] } == identity
            if let existing = m[node]?[replica], sameStorage || storage == nil { return existing }
            let fresh = make(node, replica, storage)
            m[node, default: [:]][replica] = fresh
            if let identity { madeWith.withLock { $0[node, default: [:]][replica] = identity } }
            return fresh
        }
    }

    public func existing(node: Int, replica: ReplicaKey) -> Machine? { all.withLock { $0[node]?[replica] } }

    /// Every machine made for a replica of `partition`, on any node, in node then member order.
    public func machines(of partition: PartitionKey) -> [(node: Int, replica: ReplicaKey, machine: Machine)] {
        all.withLock { all in
            all.keys.sorted().flatMap { node in
                all[node]!.filter { $0.key.partition == partition }.sorted { $0.key.member < $1.key.member }
                    .map { (node, $0.key, $0.value) }
            }
        }
    }
}

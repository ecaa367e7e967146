import RaftConsensus

/// Chooses storages for new replicas, and explains each choice.
///
/// Rules, in order:
/// 1. never two replicas of a partition on one node (nor on one storage);
/// 2. spread across nodes: among the eligible storages, the node holding the fewest
///    replicas wins;
/// 3. least loaded: then the storage with the fewest replicas, then the fewest bytes, then
///    the name (so a plan is deterministic);
/// 4. object pools stay together: a pool and the repositories linked to it live in the
///    pool's partition, which is placed (and moved) whole, never split.
///
/// The policy is pure: it works on the load it is given (every node's storages and the
/// partitions they hold, as `raftd` gathers them) and counts its own decisions as it goes,
/// so one plan spreads many partitions.
public struct PlacementPolicy: Sendable {
    public struct StorageLoad: Sendable, Hashable {
        public var name: StorageName
        public var node: NodeID
        public var replicas: Int
        public var bytes: UInt64

        public init(name: StorageName, node: NodeID, replicas: Int, bytes: UInt64) {
            self.name = name
            self.node = node
            self.replicas = replicas
            self.bytes = bytes
        }
    }

    /// A partition as placement sees it.
    public struct Partition: Sendable, Hashable {
        public var key: PartitionKey
        /// Storages holding its replicas now.
        public var storages: [StorageName]
        public var bytes: UInt64
        public var pools: Int

        public init(key: PartitionKey, storages: [StorageName], bytes: UInt64, pools: Int = 0) {
            self.key = key
            self.storages = storages
            self.bytes = bytes
            self.pools = pools
        }
    }

    /// Where a new replica goes, and why.
    public struct Decision: Sendable, Hashable {
        public var partition: PartitionKey
        public var storage: StorageName
        public var node: NodeID
        public var reason: String
    }

    /// A storage to move one replica away from, and where to (a rebalance plan).
    public struct Move: Sendable, Hashable {
        public var partition: PartitionKey
        public var from: StorageName
        public var to: StorageName
        public var reason: String
    }

    public private(set) var storages: [StorageLoad]

    public init(storages: [StorageLoad]) {
        self.storages = storages.sorted { $0.name < $1.name }
    }

    private func node(of storage: StorageName) -> NodeID? { storages.first { $0.name == storage }?.node }

    private func nodeLoad(_ node: NodeID) -> Int {
        storages.filter { $0.node == node }.reduce(0) { $0 + $1.replicas }
    }

    /// The storage for one more replica of `partition`, or why there is none. The choice
    /// counts as load for later decisions.
    public mutating func place(_ partition: Partition) -> Result<Decision, PlacementRefusal> {
        let usedNodes = Set(partition.storages.compactMap(node(of:)))
        let eligible = storages.filter { !usedNodes.contains($0.node) && !partition.storages.contains($0.name) }
        guard !eligible.isEmpty else {
            return .failure(
                .noEligibleStorage(
                    "every node already holds a replica of \(partition.key) (\(usedNodes.count) of \(Set(storages.map(\.node)).count) nodes)"
                ))
        }
        let ranked = eligible.sorted {
            (nodeLoad($0.node), $0.replicas, $0.bytes, $0.name) < (nodeLoad($1.node), $1.replicas, $1.bytes, $1.name)
        }
        let chosen = ranked[0]
        var reason =
            "\(chosen.name) on node \(chosen.node): its node holds no replica of \(partition.key) and \(nodeLoad(chosen.node)) replicas in all; the storage has \(chosen.replicas) replicas and \(chosen.bytes) bytes"
        if ranked.count > 1 {
            let others = ranked.dropFirst().prefix(3).map { "\($0.name): \($0.replicas) replicas, \($0.bytes) bytes" }
            reason += ", the least loaded of \(ranked.count) eligible (next: \(others.joined(separator: "; ")))"
        } else {
            reason += ", the only eligible storage"
        }
        if partition.pools > 0 {
            reason += "; the partition's \(partition.pools) object pool(s) and their members move with it"
        }
        let i = storages.firstIndex { $0.name == chosen.name }!
        storages[i].replicas += 1
        storages[i].bytes += partition.bytes
        return .success(Decision(partition: partition.key, storage: chosen.name, node: chosen.node, reason: reason))
    }

    /// The additions that give every partition `factor` replicas, paced by the caller.
    /// Partitions with `factor` or more are left alone (said so in `skipped`).
    public mutating func plan(
        replicationFactor factor: Int, _ partitions: [Partition]
    ) -> (decisions: [Decision], skipped: [(PartitionKey, String)]) {
        var decisions: [Decision] = []
        var skipped: [(PartitionKey, String)] = []
        // Largest first: big partitions are the hardest to fit evenly.
        for partition in partitions.sorted(by: { ($0.bytes, $1.key) > ($1.bytes, $0.key) }) {
            var current = partition
            if current.storages.count >= factor {
                skipped.append((partition.key, "has \(current.storages.count) replicas already"))
                continue
            }
            placing: while current.storages.count < factor {
                switch place(current) {
                case .success(let decision):
                    decisions.append(decision)
                    current.storages.append(decision.storage)
                case .failure(let refusal):
                    skipped.append((partition.key, refusal.description))
                    break placing
                }
            }
        }
        return (decisions, skipped)
    }

    /// What a rebalance would move (nothing is moved): one replica at a time from the
    /// storage with the most replicas to the least loaded eligible one, while they differ
    /// by more than one.
    public mutating func rebalance(_ partitions: [Partition], maxMoves: Int = 1000) -> [Move] {
        var moves: [Move] = []
        var placed = partitions
        for _ in 0..<maxMoves {
            let byLoad = storages.sorted { ($0.replicas, $0.bytes, $0.name) > ($1.replicas, $1.bytes, $1.name) }
            guard let most = byLoad.first, let least = byLoad.last, most.replicas - least.replicas > 1 else { break }
            // The smallest partition on the fullest storage whose other replicas leave the
            // least loaded storage's node free.
            let candidates = placed.indices.filter { placed[$0].storages.contains(most.name) }
                .sorted { placed[$0].bytes < placed[$1].bytes }
            var moved = false
            for i in candidates {
                let others = placed[i].storages.filter { $0 != most.name }
                if others.compactMap(node(of:)).contains(least.node) || others.contains(least.name) { continue }
                do {
                    moves.append(
                        Move(
                            partition: placed[i].key, from: most.name, to: least.name,
                            reason:
                                "\(most.name) holds \(most.replicas) replicas, \(least.name) \(least.replicas); \(placed[i].key) (\(placed[i].bytes) bytes) has no replica on node \(least.node)"
                        ))
                    placed[i].storages = others + [least.name]
                    let a = storages.firstIndex { $0.name == most.name }!
                    let b = storages.firstIndex { $0.name == least.name }!
                    storages[a].replicas -= 1
                    storages[a].bytes -= min(storages[a].bytes, placed[i].bytes)
                    storages[b].replicas += 1
                    storages[b].bytes += placed[i].bytes
                    moved = true
                    break
                }
            }
            if !moved { break }
        }
        return moves
    }
}

public enum PlacementRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    case noEligibleStorage(String)

    public var description: String {
        switch self {
        case .noEligibleStorage(let why): return "no storage can take another replica: \(why)"
        }
    }
}

import Foundation
import Logging
import NIOPosix
import RaftConsensus
import RaftEngine
import RaftTransport
import Synchronization

/// The partitions' state machines on this node, by partition (one replica per partition
/// per node).
final class PartitionMachines: Sendable {
    private let machines = Mutex<[PartitionKey: PartitionStateMachine]>([:])

    func add(_ key: PartitionKey, _ machine: PartitionStateMachine) { machines.withLock { $0[key] = machine } }
    func machine(_ key: PartitionKey) -> PartitionStateMachine? { machines.withLock { $0[key] } }
    var count: Int { machines.withLock { $0.count } }
}

/// One raftd node: its storages, node host, peer transport and partitions, assembled from
/// a `NodeConfiguration`. `raftd serve` runs it behind the gRPC and HTTP listeners.
final class RaftServer: Sendable {
    let configuration: NodeConfiguration
    let logger: Logger
    let host: NodeHost
    let transport: PeerTransport
    let attachments: PartitionAttachments
    let snapshots: PartitionSnapshots
    let writer: PartitionWriter
    let reader: PartitionReader
    let machines: PartitionMachines
    let checkpointers: [PartitionCheckpointer]
    let provisioners: [StorageName: PartitionProvisioner]
    let metadata: [StorageName: MetadataStore]
    let started = ContinuousClock.now
    /// Paths whose creation is running on this node, and partitions minted for a path whose
    /// creation ended with an unknown outcome (a retry commits into the same partition, so
    /// one path never lands in two).
    let creations = Mutex<(running: Set<RelativePath>, minted: [RelativePath: PartitionKey])>(([], [:]))
    /// Compares routing entries with the peers' (docs/MEMBERSHIP.md): every replica once
    /// after start, then those that know no leader every `routeAuditSeconds`.
    let routeAuditor = Mutex<Task<Void, Never>?>(nil)
    static let routeAuditSeconds = 10

    /// Opens every storage (creating the layout of a new one), loads its partitions and
    /// builds the host. Nothing listens yet.
    init(configuration: NodeConfiguration, logger: Logger, initializeStorages: Bool = false) throws {
        self.configuration = configuration
        self.logger = logger
        var storages: [Storage] = []
        var checkpointers: [PartitionCheckpointer] = []
        var layouts: [StorageName: StorageLayout] = [:]
        var roots: [StorageName: String] = [:]
        var checkpointerOf: [StorageName: PartitionCheckpointer] = [:]
        do {
            for entry in configuration.storages {
                let storage: Storage
                do {
                    storage = try Storage(
                        root: entry.path, clusterID: configuration.clusterID, name: entry.name,
                        nodeID: configuration.nodeID, createIfMissing: initializeStorages)
                } catch {
                    throw ServerError(
                        "storage \(entry.name) at \(entry.path): \(error). An empty directory is not made a storage silently (an unmounted disk looks the same): `raftd init` initializes storages, or start once with --initialize-storages. If another raftd uses it, stop that one; if it belongs to another cluster or node, fix storage.path"
                    )
                }
                storages.append(storage)
                layouts[entry.name] = storage.layout
                roots[entry.name] = entry.path
                let checkpointer: PartitionCheckpointer
                do {
                    checkpointer = try PartitionCheckpointer(storageRoot: entry.path, intervalMilliseconds: 1_000)
                } catch {
                    storage.close()
                    throw ServerError(
                        "storage \(entry.name) at \(entry.path): syncing it before its replicas open failed: \(error). The disk is failing or read-only; fix it, then start again"
                    )
                }
                checkpointers.append(checkpointer)
                checkpointerOf[entry.name] = checkpointer
            }
        } catch {
            for storage in storages { storage.close() }
            for checkpointer in checkpointers { checkpointer.stop() }
            throw error
        }
        self.checkpointers = checkpointers
        metadata = Dictionary(uniqueKeysWithValues: storages.map { ($0.metadata.identity.storageName, $0.metadata) })
        let machines = PartitionMachines()
        self.machines = machines
        let registries = metadata
        let directories = layouts
        let rootsByStorage = roots
        let checkpointersByStorage = checkpointerOf

        var options = NodeHost.Options()
        options.tickMilliseconds = configuration.tickMilliseconds
        options.electionTicks = configuration.electionTicks
        options.heartbeatTicks = configuration.heartbeatTicks
        // The host's other periods are in ticks with defaults for 100 ms ticks: keep them
        // in time whatever the tick. A peer is declared dead after one election timeout of
        // silence (its groups then campaign); it is told alive five times within that.
        let tick = configuration.tickMilliseconds
        options.livenessTimeoutTicks = configuration.electionTicks
        options.livenessIntervalTicks = max(1, configuration.electionTicks / 5)
        options.requestTimeoutTicks = max(3 * configuration.electionTicks, 5_000 / tick)
        // Groups quiesce after the default 3 ticks idle, not after a fixed time: at 10 ms
        // ticks that is before their first heartbeat. Measured with 1,000 partitions each
        // written about once a second: 300 ms of idle heartbeats before quiescing cost more
        // than the wake-up at the next write (1,223 → 1,046 writes/s through the batch
        // stream, docs/BENCHMARKS.md).
        options.dormantAfterQuiescedTicks = max(50, 5_000 / tick)
        options.appliedFlushTicks = max(1, 100 / tick)
        options.logRetentionEntries = UInt64(configuration.logRetentionEntries)
        options.logRetentionBytes = configuration.logRetentionBytes
        options.compactionStepEntries = UInt64(configuration.logCompactionStepEntries)
        options.compactionIntervalTicks = max(1, 1_000 / tick)
        let map = try ClusterMap(configuration.clusterMap)
        let host = try NodeHost(
            nodeID: configuration.nodeID, cluster: map, storages: storages, options: options
        ) { replica, _, storage throws(StateMachineError) in
            let machine = try PartitionStateMachine(
                storageRoot: rootsByStorage[storage]!,
                directory: directories[storage]!.partitionDirectory(replica.partition),
                checkpointer: checkpointersByStorage[storage], partition: replica.partition,
                registry: registries[storage]!)
            machines.add(replica.partition, machine)
            return machine
        }
        self.host = host

        var transportConfiguration = PeerTransportConfiguration(
            nodeID: configuration.nodeID, clusterID: configuration.clusterID, secret: configuration.secret,
            listen: configuration.peerListen,
            peers: Dictionary(uniqueKeysWithValues: configuration.peers.map { ($0.id, $0.address) }))
        transportConfiguration.eventLoopThreads = 1
        transportConfiguration.tls = configuration.peerTLS
        var transportLogger = logger
        transportLogger[metadataKey: "component"] = "transport"
        transport = try PeerTransport(configuration: transportConfiguration, logger: transportLogger)

        // The directory of this node's replica of a partition: its state machine's.
        attachments = PartitionAttachments(host: host) { machines.machine($0)?.directory }
        var snapshotOptions = PartitionSnapshots.Options()
        snapshotOptions.compressionLevel = configuration.snapshotCompressionLevel
        snapshotOptions.bandwidthBytesPerSecond = configuration.snapshotBandwidthBytesPerSecond
        snapshotOptions.maximumSending = configuration.snapshotMaximumSending
        snapshotOptions.maximumReceiving = configuration.snapshotMaximumReceiving
        snapshots = PartitionSnapshots(host: host, clusterID: configuration.clusterID, options: snapshotOptions) {
            machines.machine($0)
        }
        writer = PartitionWriter(host: host, attachments: attachments) { machines.machine($0) }
        reader = PartitionReader(host: host) { machines.machine($0) }
        var provisioners: [StorageName: PartitionProvisioner] = [:]
        let peerStorages = Array(
            configuration.peers.compactMap { $0.storages.first }.prefix(configuration.initialReplicas - 1))
        for entry in configuration.storages {
            var provisioner = PartitionProvisioner(
                host: host, writer: writer, storage: entry.name, metadata: metadata[entry.name]!)
            provisioner.peerStorages = peerStorages
            provisioners[entry.name] = provisioner
        }
        self.provisioners = provisioners
    }

    /// Starts the host, then the peer transport (listening and dialling).
    func start() async throws {
        host.start(transport: transport, bulk: attachments, snapshots: snapshots)
        do {
            try await transport.start(receiver: host)
        } catch {
            host.stop()
            for checkpointer in checkpointers { checkpointer.stop() }
            throw ServerError("listen.peer: \(error)")
        }
        let host = self.host
        routeAuditor.withLock {
            $0 = Task.detached {
                // Peers connect within a second or two; a replica removed while this node was
                // away learns of it from them and deletes its data.
                try? await Task.sleep(for: .seconds(2))
                // Every replica once after start, then every sixth round (a removed learner
                // keeps its leader hint and would never be asked otherwise); the replicas
                // that know no leader, lag an entry or wait for joins every round.
                var round = 0
                while !Task.isCancelled {
                    await host.auditRoutes(onlyUnled: round % 6 != 0)
                    round += 1
                    try? await Task.sleep(for: .seconds(Self.routeAuditSeconds))
                }
            }
        }
    }

    /// Stops taking peer traffic, then stops the host: in-flight requests end, the WALs
    /// write and sync what is queued, applied indexes are recorded, storages close.
    func stop() async {
        routeAuditor.withLock { $0?.cancel() }
        await transport.stop()
        host.stop()
        for checkpointer in checkpointers { checkpointer.stop() }
    }

    /// The partition holding `path`, from any of this node's storages' registries.
    func partition(of path: RelativePath) -> PartitionKey? {
        for store in metadata.values {
            if let key = try? store.partition(of: path) { return key }
        }
        return nil
    }

    /// The client (gRPC) address of `node`, for NotLeader answers.
    func clientAddress(of node: NodeID) -> String? {
        if node == configuration.nodeID { return configuration.grpcListen.description }
        return configuration.peers.first { $0.id == node }?.clientAddress.description
    }

    /// Why this node cannot serve now (empty: ready): a storage not writable, or fewer
    /// peers reachable than a majority needs.
    func readiness() async -> [String] {
        var problems: [String] = []
        for entry in configuration.storages {
            if access(entry.path, W_OK) != 0 {
                problems.append("storage \(entry.name) at \(entry.path) is not writable")
                continue
            }
            // The WAL's next segment must fit: a full disk stops its writer (and the node).
            var info = statvfs()
            let needed = UInt64(2 * SharedLog.Options().segmentSize)
            if statvfs(entry.path, &info) == 0 {
                let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
                if free < needed {
                    problems.append(
                        "storage \(entry.name) at \(entry.path) has \(free >> 20) MiB free; the WAL needs \(needed >> 20) MiB to allocate its next segments: free space"
                    )
                }
            }
        }
        let nodes = configuration.peers.count + 1
        let reachable = transport.connectedPeers.count + 1
        if reachable <= nodes / 2 {
            problems.append("\(reachable) of \(nodes) nodes reachable; a majority needs \(nodes / 2 + 1)")
        }
        return problems
    }

    /// The storages of `node` in the configuration.
    func storages(of node: NodeID) -> [StorageName] {
        if node == configuration.nodeID { return configuration.storages.map(\.name) }
        return configuration.peers.first { $0.id == node }?.storages ?? []
    }

    /// Replicas and leaders per storage of this node (cluster info), from the metadata and
    /// each partition's status.
    func partitionCounts() async -> [StorageName: (replicas: UInt64, leaders: UInt64)] {
        var counts: [StorageName: (replicas: UInt64, leaders: UInt64)] = [:]
        for (name, store) in metadata {
            let records = (try? store.partitions()) ?? []
            var leaders: UInt64 = 0
            for record in records {
                if let status = try? await host.status(of: record.key), status.role == .leader { leaders += 1 }
            }
            counts[name] = (UInt64(records.count), leaders)
        }
        return counts
    }

    /// The node that creates the repository or pool at `path`: one per path, so that two
    /// concurrent creations of a path meet on one node (which serialises them) instead of
    /// minting two partitions. Nodes sorted by ID, chosen by a hash of the path.
    func creator(of path: RelativePath) -> NodeID {
        let nodes = ([configuration.nodeID] + configuration.peers.map(\.id)).sorted()
        let digest = SHA256.hash(Array(path.rawValue.utf8))
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return nodes[Int(value % UInt64(nodes.count))]
    }

    /// The provisioner of the storage new partitions of this node go to (the first).
    var provisioner: PartitionProvisioner { provisioners[configuration.storages[0].name]! }
}

struct ServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import RaftConsensus
import RaftTesting

@testable import RaftEngine

/// Three in-process nodes whose replicas are `PartitionStateMachine`s under per-node
/// storage roots, with a `PartitionWriter` on every node: the partition tests' cluster.
final class PartitionTestCluster: @unchecked Sendable {
    let root: String
    let cluster: LocalCluster<PartitionStateMachine>
    let checkpointers: [PartitionCheckpointer]
    let writers: [PartitionWriter]
    let attachments: [PartitionAttachments]

    /// The partition directory of a node's replica.
    static func partitionDirectory(_ root: String, node: Int, _ key: PartitionKey) -> String {
        "\(root)/node\(node)/+raft/partitions/p\(key.partitionID.rawValue)"
    }

    init(
        directory: String, nodes: Int = 3, attachmentOptions: PartitionAttachments.Options = .init(),
        snapshotOptions: PartitionSnapshots.Options = .init(),
        hostOptions: (inout NodeHost.Options) -> Void = { _ in }
    ) throws {
        root = directory
        var c = LocalCluster<PartitionStateMachine>.Configuration()
        c.nodes = nodes
        c.options = HostTestCluster.testOptions()
        // 30 s per request: the other suites load the same disk and both cores, and a
        // proposal that times out cannot simply be repeated (its fate is unknown, and a
        // repeated transaction is refused by verification when the first one did commit).
        c.options.requestTimeoutTicks = 3_000
        hostOptions(&c.options)
        c.directory = directory
        for node in 0..<nodes {
            try FileManager.default.createDirectory(
                atPath: "\(directory)/node\(node)", withIntermediateDirectories: true)
        }
        let checkpointers = try (0..<nodes).map { node throws(IOError) in
            try PartitionCheckpointer(storageRoot: "\(directory)/node\(node)", intervalMilliseconds: 1_000)
        }
        self.checkpointers = checkpointers
        cluster = try LocalCluster<PartitionStateMachine>(
            c,
            machines: MachineRegistry(perReplicaWithStorage: { node, replica, storage in
                try! PartitionStateMachine(
                    storageRoot: "\(directory)/node\(node)",
                    directory: Self.partitionDirectory(directory, node: node, replica.partition),
                    checkpointer: checkpointers[node], partition: replica.partition, registry: storage.metadata)
            }))
        cluster.configuration.bulkService = { node, host in
            PartitionAttachments(host: host, options: attachmentOptions) { key in
                Self.partitionDirectory(directory, node: node, key)
            }
        }
        let registry = cluster.machines
        cluster.configuration.snapshotService = { node, host, clusterID in
            PartitionSnapshots(host: host, clusterID: clusterID, options: snapshotOptions) { key in
                registry.existing(node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
            }
        }
        try cluster.startAll()
        let cluster = self.cluster
        let attachments = (0..<nodes).map { cluster.bulkServices[$0] as! PartitionAttachments }
        self.attachments = attachments
        writers = (0..<nodes).map { node in
            PartitionWriter(host: cluster.hosts[node]!, catchUpMilliseconds: 30_000, attachments: attachments[node]) {
                key in
                cluster.machines.existing(
                    node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
            }
        }
    }

    func stop() {
        cluster.stopAll()
        for c in checkpointers { c.stop() }
    }

    func storageRoot(_ node: Int) -> String { "\(root)/node\(node)" }

    func machine(_ node: Int, _ key: PartitionKey) -> PartitionStateMachine {
        cluster.machines.machine(node: node, replica: ReplicaKey(partition: key, member: MemberID(UInt64(node + 1))))
    }

    /// Commits at the leader, following leadership and retrying retryable host errors until
    /// the deadline; a refusal (verification) is returned as is.
    func commit(
        _ key: PartitionKey, _ operations: [PartitionOperation], within seconds: Double = 30
    ) async throws(PartitionWriteError) -> LogIndex {
        let deadline = Date().addingTimeInterval(seconds)
        var lastError = PartitionWriteError.host(.timedOut)
        // At least one attempt whatever the clock says (see LocalCluster.write).
        var attempts = 0
        while attempts == 0 || Date() < deadline {
            attempts += 1
            let node = await cluster.leader(of: key) ?? 0
            do {
                return try await writers[node].commit(key, PartitionTransaction(operations))
            } catch {
                lastError = error
                guard error.isRetryable else { throw error }
                try? await Task.sleep(nanoseconds: 10_000_000)
            }
        }
        throw lastError
    }

    /// Waits until every replica applied `index`.
    func waitApplied(_ key: PartitionKey, _ index: LogIndex) async throws {
        try await cluster.waitUntil("every replica applied \(index)", within: 30) {
            (0..<cluster.nodeCount).allSatisfy { machine($0, key).appliedIndex >= index }
        }
    }
}

import Foundation
import RaftAPI
import RaftClient
import RaftEngine
import RaftTesting
import Synchronization

/// What the demo's writers share with the orchestrator while they run.
final class DemoLedger: Sendable {
    let stop = Atomic<Bool>(false)
    let acknowledged = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    /// Per partition: the highest LSN a write was acknowledged at (what a replica must have
    /// applied before it is checked).
    let lsns: Mutex<[UInt64]>

    init(partitions: Int) { lsns = Mutex(Array(repeating: 0, count: partitions)) }

    func acknowledge(_ partition: Int, _ lsn: UInt64) {
        lsns.withLock { $0[partition] = max($0[partition], lsn) }
        acknowledged.add(1, ordering: .relaxed)
    }
}

/// One acknowledged write: a reference created at an object ID in a partition.
struct DemoAck: Sendable {
    let partition: Int
    let reference: String
    let oid: String
}

/// What one writer did in one phase.
struct DemoWriterResult: Sendable {
    var acks: [DemoAck] = []
    var latencies = Latencies()
    var errors = ErrorCounts()
    /// Writes given up after 30 s without an outcome (neither acknowledged nor checked).
    var abandoned = 0

    mutating func add(_ other: DemoWriterResult) {
        acks += other.acks
        latencies.add(other.latencies)
        errors.add(other.errors)
        abandoned += other.abandoned
    }
}

/// The demo's write workload: each write is a reference transaction that creates a new
/// reference (`refs/demo/<phase>/w<writer>-<n>`) at one of the chain's commits in a random
/// partition, so that every acknowledged write can be looked for, one by one, on every
/// replica at the end.
enum DemoWriters {
    /// Runs `writers` writers until `ledger.stop` is set; their results merged.
    static func run(
        phase: String, writers: Int, paths: [String], chain: CommitChain, client: RaftClient, ledger: DemoLedger
    ) async -> DemoWriterResult {
        await withTaskGroup(of: DemoWriterResult.self) { group in
            for id in 0..<writers {
                group.addTask {
                    await writer(id: id, phase: phase, paths: paths, chain: chain, client: client, ledger: ledger)
                }
            }
            var all = DemoWriterResult()
            for await part in group { all.add(part) }
            return all
        }
    }

    static func writer(
        id: Int, phase: String, paths: [String], chain: CommitChain, client: RaftClient, ledger: DemoLedger
    ) async -> DemoWriterResult {
        var result = DemoWriterResult()
        var generator = SystemRandomNumberGenerator()
        var n = 0
        while !ledger.stop.load(ordering: .relaxed) {
            let partition = Int.random(in: 0..<paths.count, using: &generator)
            let reference = "refs/demo/\(phase)/w\(id)-\(n)"
            let oid = chain.commits[n % chain.commits.count]
            n += 1
            let began = ContinuousClock.now
            if let lsn = await create(reference, at: oid, in: paths[partition], client, &result.errors) {
                result.latencies.record(ContinuousClock.now - began)
                result.acks.append(DemoAck(partition: partition, reference: reference, oid: oid))
                ledger.acknowledge(partition, lsn)
            } else {
                result.abandoned += 1
                ledger.failed.add(1, ordering: .relaxed)
            }
        }
        return result
    }

    /// Creates `reference` at `oid` (optionally bringing `pack`); the LSN it committed at,
    /// or nil after 30 s without an outcome. An unknown outcome (the leader died with the
    /// write in flight) is settled by a linearizable read before the write is tried again:
    /// a retry that finds the reference already at `oid` means an earlier attempt committed.
    static func create(
        _ reference: String, at oid: String, in path: String, pack: Data? = nil, _ client: RaftClient,
        _ errors: inout ErrorCounts
    ) async -> UInt64? {
        var request = Raftd_V1_UpdateReferencesRequest()
        request.repository.relativePath = path
        var update = Raftd_V1_ReferenceUpdate()
        update.reference = reference
        update.oldOid = ObjectID.zero.hex
        update.newOid = oid
        request.updates = [update]
        if let pack { request.pack = pack }
        let deadline = ContinuousClock.now + .seconds(30)
        var readFirst = false
        while ContinuousClock.now < deadline {
            if readFirst, let lsn = await committedLSN(reference, oid, path, client) { return lsn }
            readFirst = false
            do {
                return try await client.updateReferences(request)
            } catch let error as RaftClientError {
                errors.add("\(error.code)")
                switch error.code {
                case .referenceMismatch where error.mismatch?.actualOid == oid:
                    readFirst = true  // an earlier attempt committed: read its LSN
                case .unknownOutcome, .unavailable, .notLeader, .internal, .notYetApplied:
                    readFirst = true
                case .notFound:
                    // A repository created a moment ago may not yet be applied on the node
                    // that routes the call: nothing was done, try again.
                    break
                default:
                    return nil  // refused (invalid, not found, another value): not retried
                }
            } catch {
                errors.add("transport")
                readFirst = true
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    /// A linearizable read of `reference`: the LSN read at when it is at `oid`; nil when it
    /// is not, or the read failed.
    static func committedLSN(_ reference: String, _ oid: String, _ path: String, _ client: RaftClient) async -> UInt64?
    {
        var read = Raftd_V1_ListRefsRequest()
        read.repository.relativePath = path
        read.consistency = .linearizable
        read.prefix = reference
        guard let refs = try? await client.listRefs(read) else { return nil }
        return refs.references.contains { $0.name == reference && $0.oid == oid } ? refs.lsn : nil
    }
}

// The child process of the partition apply crash test: applies the transactions of a
// script file to a partition state machine, from the index its last checkpoint recorded,
// the way the host hands entries out after a restart. With a kill point it sends itself
// SIGKILL at that file operation of apply or checkpoint.
//   PartitionCrashChild <storage root> <replica directory> <script> <kill point | -1>
// Script: u32 count, then count x (u32 length, encoded PartitionTransaction), big-endian.
// Prints "points <n>" (kill points passed) and exits 0 when everything is applied and
// checkpointed.

import RaftConsensus
import RaftEngine

#if canImport(Glibc)
    import Glibc
#endif

let arguments = CommandLine.arguments
func fail(_ message: String) -> Never {
    print("E \(message)")
    exit(1)
}

// PartitionCrashChild attach <directory> <pack file> <index file> <kill point | -1>:
// stores the pack and index as an attachment in <directory>/put (AttachmentStore.put), then
// receives them in 1 MiB pieces into <directory>/received (AttachmentReceiver), as a
// leader's writer and a follower's transfer do.
if arguments.count == 6 && arguments[1] == "attach" {
    guard let killAt = Int(arguments[5]), let pack = try? FileSystem.readFileIfExists(arguments[3]),
        let index = try? FileSystem.readFileIfExists(arguments[4])
    else { fail("usage: PartitionCrashChild attach <directory> <pack> <index> <kill point | -1>") }
    if killAt >= 0 { CrashPoints.arm(killAt: killAt) }
    do {
        let id = try AttachmentStore(directory: arguments[2] + "/put").put(pack: pack, index: index)
        let receiver = try AttachmentStore(directory: arguments[2] + "/received").receive(id)
        let whole = pack + index
        for start in stride(from: 0, to: whole.count, by: 1 << 20) {
            try receiver.write(Array(whole[start..<min(start + (1 << 20), whole.count)]))
        }
        try receiver.finish()
    } catch {
        fail("\(error)")
    }
    print("points \(CrashPoints.count)")
    exit(0)
}

// PartitionCrashChild install <storage root> <replica directory> <cluster ID> <node ID>
//   <partition key> <staged name> <index> <term> <kill point | -1>:
// opens the storage's metadata and the replica (finishing an install a kill interrupted),
// then installs the snapshot staged as <staged name> at <index>, as the host does when a
// follower takes a snapshot; prints "points <n>" and "applied <index>".
if arguments.count == 11 && arguments[1] == "install" {
    guard let killAt = Int(arguments[10]), let index = UInt64(arguments[8]), let term = UInt64(arguments[9]) else {
        fail(
            "usage: PartitionCrashChild install <root> <replica> <cluster> <node> <partition> <staged> <index> <term> <kill>"
        )
    }
    do {
        let partition = try PartitionKey(parsing: arguments[6])
        let store = try MetadataStore.open(
            storageRoot: arguments[2], clusterID: try ClusterID(parsing: arguments[4]),
            storageName: partition.authority, nodeID: try NodeID(parsing: arguments[5]), createIfMissing: false)
        let machine = try PartitionStateMachine(
            storageRoot: arguments[2], directory: arguments[3], checkpointIntervalMilliseconds: 1_000_000,
            partition: partition, registry: store)
        // The snapshot service stages into the open replica (opening sweeps staging).
        let parked = arguments[2] + "/parked-snapshot"
        if FileSystem.exists(parked) {
            try FileSystem.rename(parked, to: machine.snapshotStagingDirectory + "/" + arguments[7])
        }
        if killAt >= 0 { CrashPoints.arm(killAt: killAt) }
        let metadata = SnapshotMetadata(
            index: LogIndex(index), term: Term(term), confState: ConfState(voters: [MemberID(1)]))
        try machine.restore(Snapshot(metadata: metadata, data: Array(arguments[7].utf8)))
        machine.finishRestore(metadata)
        print("points \(CrashPoints.count)")
        print("applied \(machine.appliedIndex.rawValue)")
    } catch {
        fail("\(error)")
    }
    exit(0)
}

guard arguments.count == 5, let killAt = Int(arguments[4]) else {
    print("usage: PartitionCrashChild <storage root> <replica directory> <script> <kill point | -1>")
    exit(2)
}
guard let script = try? FileSystem.readFileIfExists(arguments[3]) else { fail("cannot read \(arguments[3])") }
func u32(_ at: Int) -> Int {
    Int(script[at]) << 24 | Int(script[at + 1]) << 16 | Int(script[at + 2]) << 8 | Int(script[at + 3])
}
var entries: [Entry] = []
var at = 4
for k in 0..<u32(0) {
    let length = u32(at)
    entries.append(
        Entry(
            term: Term(1), index: LogIndex(UInt64(k + 1)), payload: .normal(Array(script[(at + 4)..<(at + 4 + length)]))
        ))
    at += 4 + length
}

// Armed before the state machine opens: creating its layout counts too.
if killAt >= 0 { CrashPoints.arm(killAt: killAt) }
let machine: PartitionStateMachine
do {
    // Checkpoints only when asked (below), so that crashes find applied, unrecorded work.
    machine = try PartitionStateMachine(
        storageRoot: arguments[1], directory: arguments[2], checkpointIntervalMilliseconds: 1_000_000)
} catch {
    fail("\(error)")
}
// Two entries per apply call, a checkpoint after every second call: like the host's apply
// batches and the checkpointer's rounds. So the work after a checkpoint spans entries that
// touch a repository and then remove it (re-applied, they meet the removal).
var next = Int(machine.appliedIndex.rawValue)
var calls = 0
while next < entries.count {
    let batch = Array(entries[next..<min(next + 2, entries.count)])
    do { try machine.apply(batch) } catch { fail("apply: \(error)") }
    next += batch.count
    calls += 1
    if calls % 2 == 0 {
        do { try machine.checkpoint() } catch { fail("checkpoint: \(error)") }
    }
}
do { try machine.checkpoint() } catch { fail("checkpoint: \(error)") }
print("points \(CrashPoints.count)")
exit(0)

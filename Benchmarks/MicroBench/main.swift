// MicroBench: time and heap allocations per operation for the building blocks of the write
// path, each measured alone on one thread: peer frames encoded and decoded, partition
// entries (a reference transaction padded with a 256-byte value) encoded and decoded, one
// entry replicated through three in-memory consensus members (per step), and a WAL batch
// (64 groups, one 256-byte entry each, fdatasync'd through the chosen backend).
// Allocations are counted by CAllocCounter, which replaces the malloc family in this
// program only.
//
// Usage: MicroBench [--quick] [--dir D]   (D: where the WAL batch writes; default .)
import CAllocCounter
import RaftConsensus
import RaftEngine

#if canImport(Glibc)
    import Glibc
#endif

nonisolated(unsafe) var sink = 0

func nanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// Runs `body` `iterations` times after a warm-up; prints ns and allocations per
/// operation (and per `unit` when one operation is several of them).
func measure(_ name: String, iterations: Int, units: Int = 1, unit: String = "", _ body: () throws -> Void) rethrows {
    for _ in 0..<max(1, iterations / 10) { try body() }
    let allocations0 = craft_allocations()
    let start = nanoseconds()
    for _ in 0..<iterations { try body() }
    let elapsed = Double(nanoseconds() - start)
    let allocations = Double(craft_allocations() - allocations0)
    let perOperation = elapsed / Double(iterations)
    let allocationsPerOperation = allocations / Double(iterations)
    var line =
        "\(name + String(repeating: " ", count: max(0, 52 - name.count))) \(format(perOperation / 1000, 2).leftPadded(9)) µs/op  \(format(allocationsPerOperation, 1).leftPadded(8)) allocs/op"
    if units > 1 {
        line +=
            "  (\(format(perOperation / Double(units), 0)) ns, \(format(allocationsPerOperation / Double(units), 2)) allocs per \(unit))"
    }
    print(line)
}

func format(_ value: Double, _ decimals: Int) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([value]) { vsnprintf(&buffer, 64, "%.\(decimals)f", $0) }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

let arguments = CommandLine.arguments
let quick = arguments.contains("--quick")
let directory = arguments.firstIndex(of: "--dir").map { arguments[$0 + 1] } ?? "."
let scale = quick ? 10 : 1

print("MicroBench\(quick ? " (quick)" : ""): per operation, one thread; allocations counted by CAllocCounter")

// MARK: peer frames

let storage = try StorageName("bench")
let payload = [UInt8](repeating: 0x5A, count: 256)
let nodeA = try NodeID(bytes: [UInt8](repeating: 1, count: 16))
let nodeB = try NodeID(bytes: [UInt8](repeating: 2, count: 16))
var messages: [PeerMessage] = []
for g in 0..<64 {
    let key = PartitionKey(authority: storage, partitionID: try PartitionID(UInt64(g + 1)))
    let entry = Entry(term: Term(3), index: LogIndex(UInt64(1000 + g)), payload: .normal(payload))
    messages.append(
        PeerMessage(
            partition: key,
            message: Message(
                kind: .append, from: 1, to: 2, term: Term(3), logTerm: Term(3), index: LogIndex(UInt64(999 + g)),
                entries: [entry], commit: LogIndex(UInt64(998 + g)))))
}
let frame = PeerFrame(from: nodeA, to: nodeB, senderBoot: 7, messages: messages)
let encodedFrame = PeerWire.encode(frame)
measure("peer frame encode: 64 appends of one 256 B entry", iterations: 20_000 / scale, units: 64, unit: "message") {
    sink &+= PeerWire.encode(frame).count
}
try measure(
    "peer frame decode: the same (\(encodedFrame.count) B)", iterations: 20_000 / scale, units: 64, unit: "message"
) {
    sink &+= try PeerWire.decodeFrame(encodedFrame).messages.count
}
var heartbeats: [PeerMessage] = []
for g in 0..<64 {
    let key = PartitionKey(authority: storage, partitionID: try PartitionID(UInt64(g + 1)))
    heartbeats.append(
        PeerMessage(
            partition: key, message: Message(kind: .heartbeat, from: 1, to: 2, term: Term(3), commit: LogIndex(5))))
}
let heartbeatFrame = PeerFrame(from: nodeA, to: nodeB, senderBoot: 7, messages: heartbeats)
let encodedHeartbeats = PeerWire.encode(heartbeatFrame)
measure("peer frame encode: 64 heartbeats", iterations: 50_000 / scale, units: 64, unit: "message") {
    sink &+= PeerWire.encode(heartbeatFrame).count
}
try measure("peer frame decode: 64 heartbeats", iterations: 50_000 / scale, units: 64, unit: "message") {
    sink &+= try PeerWire.decodeFrame(encodedHeartbeats).messages.count
}

// MARK: partition entries

let transaction = PartitionTransaction([
    .updateReferences(
        try RelativePath("group/project.git"),
        [
            ReferenceUpdate(
                name: try RefName("refs/heads/bench-c7"), old: try ObjectID(hex: String(repeating: "1", count: 40)),
                new: try ObjectID(hex: String(repeating: "2", count: 40)))
        ]),
    .setValue(key: "bench-c7-3", value: payload),
])
let encodedEntry = try PartitionEntryCodec.encode(transaction)
try measure("partition entry encode: 1 ref update + 256 B value", iterations: 200_000 / scale) {
    sink &+= try PartitionEntryCodec.encode(transaction).count
}
try measure("partition entry decode: the same (\(encodedEntry.count) B)", iterations: 200_000 / scale) {
    sink &+= try PartitionEntryCodec.decode(encodedEntry).operations.count
}

// MARK: consensus

/// Three members in memory: "persist" appends to MemoryStableLog, "send" is `step`.
final class Trio {
    var logs: [MemoryStableLog] = []
    var nodes: [RawNode] = []
    var inbox: [Message] = []
    var steps = 0

    init() {
        let ids: [MemberID] = [1, 2, 3]
        for id in ids {
            let log = MemoryStableLog(confState: ConfState(voters: ids))
            var config = RaftConfig(id: id)
            config.maxSizePerMsg = 1 << 20
            config.maxInflightMsgs = 64
            config.seed = 1
            logs.append(log)
            nodes.append(RawNode(config: config, log: log))
        }
        nodes[0].campaign()
        pump()
    }

    func pump() {
        var moved = true
        while moved {
            moved = false
            for i in nodes.indices {
                while nodes[i].hasReady {
                    moved = true
                    let ready = nodes[i].ready()
                    inbox.append(contentsOf: ready.messages)
                    logs[i].append(ready.entries)
                    if let hardState = ready.hardState { logs[i].setHardState(hardState) }
                    inbox.append(contentsOf: ready.messagesAfterPersist)
                    nodes[i].advance(ready)
                }
            }
            if !inbox.isEmpty {
                moved = true
                let batch = inbox
                inbox.removeAll(keepingCapacity: true)
                for message in batch {
                    steps += 1
                    nodes[Int(message.to.rawValue) - 1].step(message)
                }
            }
        }
    }
}

let trio = Trio()
let leader = trio.nodes.firstIndex { $0.role == .leader } ?? 0
let steps0 = trio.steps
let rounds = 50_000 / scale
measure("consensus: 1 entry of 256 B proposed and committed by 3", iterations: rounds) {
    _ = trio.nodes[leader].propose(payload)
    trio.pump()
}
let stepsPerEntry = Double(trio.steps - steps0) / Double(rounds + max(1, rounds / 10))
print("    (\(format(stepsPerEntry, 1)) message steps and their ready/advance per entry)")

// MARK: WAL batch

let walDirectory = "\(directory)/.microbench-wal-\(getpid())"
_ = mkdir(walDirectory, 0o700)
var walOptions = SharedLog.Options()
walOptions.cacheBytes = 0
let log = try SharedLog(directory: walDirectory, options: walOptions)
var next = [UInt64](repeating: 0, count: 64)
try measure("WAL batch: 64 groups x one 256 B entry + fdatasync", iterations: 2_000 / scale, units: 64, unit: "entry") {
    var writes: [GroupWrite] = []
    writes.reserveCapacity(64)
    for g in 0..<64 {
        next[g] += 1
        writes.append(
            GroupWrite(
                group: GroupID(UInt64(g + 2)),
                entries: [WALEntry(term: Term(1), index: LogIndex(next[g]), payload: payload)]
            ))
    }
    try log.append(writes)
}
log.close()
_ = system("rm -rf '\(walDirectory)'")
if sink == 42 { print("") }

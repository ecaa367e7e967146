// The child process of the WAL crash test: appends to a WAL until it is killed with
// SIGKILL, printing one line per acknowledged (durable) operation:
//   A <group> <first> <last> <term>     entries first...last with term are durable
//   C <group> <index> <term>            compaction up to index is durable
//   O <group> <first>                   an overwrite from first is being written (said
//                                       before the append: a crash inside it may leave a
//                                       prefix, so the log may end anywhere from first - 1)
// Usage: WALCrashChild <wal directory> <seed>

import Foundation
import RaftConsensus
import RaftEngine
import WALCrashSupport

#if canImport(Glibc)
    import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count == 3, let seed = UInt64(arguments[2]) else {
    print("usage: WALCrashChild <wal directory> <seed>")
    exit(2)
}
@Sendable func say(_ line: String) {
    let text = line + "\n"
    // One write(2) per line: whole lines only reach the pipe (PIPE_BUF), even when killed.
    _ = text.withCString { write(1, $0, strlen($0)) }
}

struct Rng {
    var state: UInt64
    mutating func next(_ bound: UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) % bound
    }
}

struct Worker: Sendable {
    let log: SharedLog
    let seed: UInt64

    func run(thread: Int) {
        var rng = Rng(state: seed &* 1000 &+ UInt64(thread))
        let mine = CrashWorkload.groups.enumerated().filter { $0.offset % CrashWorkload.threads == thread }.map(
            \.element)
        var last: [GroupID: LogIndex] = [:]
        var term: [GroupID: Term] = [:]
        var base: [GroupID: LogIndex] = [:]
        for group in mine {
            last[group] = log.lastIndex(of: group)
            base[group] = log.firstIndex(of: group).previous
            term[group] = (try? log.term(of: group, at: last[group]!)).map { max($0, Term(1)) } ?? Term(1)
        }
        while true {
            let group = mine[Int(rng.next(UInt64(mine.count)))]
            let roll = rng.next(100)
            do {
                if roll < 5, last[group]!.rawValue > base[group]!.rawValue + 2 {
                    let index = LogIndex(last[group]!.rawValue - 2)
                    let t = try log.term(of: group, at: index)
                    try log.compact(group: group, upTo: index, term: t)
                    base[group] = index
                    say("C \(group.rawValue) \(index.rawValue) \(t.rawValue)")
                    continue
                }
                var first = last[group]!.next
                if roll < 15, last[group]!.rawValue > base[group]!.rawValue + 1 {
                    // A new leader overwrites the tail with a higher term; now and then a long
                    // tail, so that the unit spans batches (its truncation in the first).
                    let reach = UInt64(roll < 7 ? 200 : 3)
                    let back = min(reach, last[group]!.rawValue - base[group]!.rawValue - 1)
                    first = LogIndex(last[group]!.rawValue - back + 1)
                    term[group] = term[group]!.next
                }
                // Mostly small appends; now and then one larger than a batch (32 KiB).
                let fresh = roll >= 97 ? 100 + rng.next(200) : 1 + rng.next(3)
                let count = first <= last[group]! ? last[group]!.rawValue - first.rawValue + 1 : fresh
                let entries = (0..<count).map { k -> WALEntry in
                    let index = LogIndex(first.rawValue + k)
                    return WALEntry(
                        term: term[group]!, index: index,
                        payload: CrashWorkload.payload(group: group, index: index, term: term[group]!))
                }
                if first <= last[group]! { say("O \(group.rawValue) \(first.rawValue)") }
                try log.append([GroupWrite(group: group, entries: entries)])
                last[group] = entries.last!.index
                say("A \(group.rawValue) \(first.rawValue) \(entries.last!.index.rawValue) \(term[group]!.rawValue)")
            } catch {
                say("E \(error)")
                exit(1)
            }
        }
    }

}

let worker: Worker
do {
    worker = Worker(log: try SharedLog(directory: arguments[1], options: CrashWorkload.options), seed: seed)
} catch {
    say("E \(error)")
    exit(1)
}
say("R")  // recovered and running
for t in 0..<CrashWorkload.threads {
    Thread.detachNewThread { worker.run(thread: t) }
}
while true { sleep(60) }

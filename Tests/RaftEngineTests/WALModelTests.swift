import Foundation
import RaftConsensus
import Testing

@testable import RaftEngine

/// The reference model: what a group's log must hold.
private struct ModelGroup {
    var base: UInt64 = 0
    var baseTerm: UInt64 = 0
    var entries: [WALEntry] = []  // base + 1 ...
    var hardState: HardState?

    var last: UInt64 { base + UInt64(entries.count) }
    var lastTerm: UInt64 { entries.last.map { $0.term.rawValue } ?? baseTerm }
}

@Suite("WAL: model")
struct WALModelTests {
    @Test(
        "WAL: random appends, conflicts, compactions, removals, GC and reopens match a model",
        arguments: Array(UInt64(1)...8))
    func randomOperations(seed: UInt64) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var options = testLogOptions(segmentSize: 32 << 10)
        options.maxBatchBytes = 8 << 10
        options.maxSegments = 3
        options.maxRewriteBytesPerRound = 4 << 10
        var rng = SplitMix64(seed: seed)
        var model: [GroupID: ModelGroup] = [:]
        let groups = (2...7).map { GroupID(UInt64($0)) }
        var log = try SharedLog(directory: dir.path, options: options)
        defer { log.close() }
        var deleted: UInt64 = 0
        var rewritten: UInt64 = 0

        for step in 0..<600 {
            let group = groups[Int(rng.next() % UInt64(groups.count))]
            var m = model[group] ?? ModelGroup()
            let roll = rng.next() % 100
            if ProcessInfo.processInfo.environment["WAL_MODEL_TRACE"] != nil {
                print(
                    "seed \(seed) step \(step) \(group) roll \(roll) base \(m.base)/\(m.baseTerm) last \(m.last) stats \(log.statistics.segmentsDeleted) rw \(log.statistics.bytesRewritten)"
                )
            }
            switch roll {
            case 0..<60:
                // Append, sometimes replacing a suffix with a higher term.
                var first = m.last + 1
                var term = max(m.lastTerm, 1)
                if roll < 12 && m.entries.count > 1 {
                    first = m.last - rng.next() % UInt64(m.entries.count - 1)
                    term += 1
                }
                let count = 1 + rng.next() % 4
                let entries = (0..<count).map { k in
                    WALEntry(
                        term: Term(term), index: LogIndex(first + k), kind: UInt8(k % 2),
                        payload: rng.bytes(Int(rng.next() % 900)))
                }
                let hardState =
                    roll % 3 == 0
                    ? HardState(term: Term(term), vote: MemberID(rng.next() % 4), commit: LogIndex(first)) : nil
                try log.append([GroupWrite(group: group, entries: entries, hardState: hardState)])
                m.entries.removeSubrange(Int(first - m.base - 1)...)
                m.entries += entries
                if let hardState { m.hardState = hardState }
            case 60..<75:
                guard m.last > m.base else { break }
                let upTo = m.base + 1 + rng.next() % (m.last - m.base)
                let term = m.entries[Int(upTo - m.base - 1)].term
                try log.compact(group: group, upTo: LogIndex(upTo), term: term)
                m.entries.removeFirst(Int(upTo - m.base))
                m.base = upTo
                m.baseTerm = term.rawValue
            case 75..<78:
                try log.removeGroup(group)
                m = ModelGroup()
            case 78..<85:
                try log.collectGarbage()
            case 85..<90:
                deleted += log.statistics.segmentsDeleted
                rewritten += log.statistics.bytesRewritten
                log.close()
                log = try SharedLog(directory: dir.path, options: options)
            default:
                // A write of another group in the same batch as this one.
                let other = groups[(groups.firstIndex(of: group)! + 1) % groups.count]
                var o = model[other] ?? ModelGroup()
                let e = WALEntry(term: Term(max(o.lastTerm, 1)), index: LogIndex(o.last + 1), payload: rng.bytes(50))
                let f = WALEntry(term: Term(max(m.lastTerm, 1)), index: LogIndex(m.last + 1), payload: rng.bytes(50))
                try log.append([GroupWrite(group: other, entries: [e]), GroupWrite(group: group, entries: [f])])
                o.entries.append(e)
                m.entries.append(f)
                model[other] = o
            }
            model[group] = m
            for g in groups { try check(log, g, model[g] ?? ModelGroup(), "seed \(seed) step \(step)") }
        }
        deleted += log.statistics.segmentsDeleted
        rewritten += log.statistics.bytesRewritten
        #expect(deleted > 0, "seed \(seed): no segment was ever deleted")
        print("WAL model seed \(seed): \(deleted) segments deleted, \(rewritten) bytes rewritten")
    }

    private func check(_ log: SharedLog, _ group: GroupID, _ m: ModelGroup, _ context: String) throws {
        #expect(log.firstIndex(of: group) == LogIndex(m.base + 1), "\(context): \(group) first index")
        #expect(log.lastIndex(of: group) == LogIndex(m.last), "\(context): \(group) last index")
        #expect(log.hardState(of: group) == m.hardState, "\(context): \(group) hard state")
        if m.base > 0 {
            #expect(try log.term(of: group, at: LogIndex(m.base)) == Term(m.baseTerm), "\(context): \(group) base term")
        }
        if !m.entries.isEmpty {
            let read = try log.entries(of: group, from: LogIndex(m.base + 1), to: LogIndex(m.last + 1), maxBytes: .max)
            #expect(read == m.entries, "\(context): \(group) entries")
        }
    }
}

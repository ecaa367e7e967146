import Foundation
import RaftConsensus
import Testing
import WALCrashSupport

@testable import RaftEngine

#if canImport(Glibc)
    import Glibc
#endif

/// What the child acknowledged, per group.
private struct AckModel {
    /// The acknowledged term of each index (a later acknowledgement overrides).
    var terms: [GroupID: [LogIndex: Term]] = [:]
    var compacted: [GroupID: LogIndex] = [:]
    /// An overwrite from this index was being written and not acknowledged: a crash inside
    /// it leaves a prefix of it (docs/WAL.md), so acknowledged entries from here on may be
    /// gone (replaced, and never committed in Raft's terms: it overwrites only conflicts).
    var overwriting: [GroupID: LogIndex] = [:]

    mutating func record(_ line: Substring) {
        let parts = line.split(separator: " ")
        guard (3...5).contains(parts.count) else { return }
        switch parts[0] {
        case "O":
            overwriting[GroupID(UInt64(parts[1])!)] = LogIndex(UInt64(parts[2])!)
        case "A":
            let group = GroupID(UInt64(parts[1])!)
            let first = UInt64(parts[2])!
            let last = UInt64(parts[3])!
            let term = Term(UInt64(parts[4])!)
            overwriting[group] = nil
            for i in first...last { terms[group, default: [:]][LogIndex(i)] = term }
        case "C":
            let group = GroupID(UInt64(parts[1])!)
            compacted[group] = max(compacted[group] ?? .zero, LogIndex(UInt64(parts[2])!))
        default: break
        }
    }

    /// After a crash: an unacknowledged overwrite of `group` left its log ending at `last`;
    /// the entries it dropped are forgotten (the next child writes them again).
    /// Returns whether acknowledged entries were dropped.
    mutating func settle(_ group: GroupID, last: LogIndex) -> Bool {
        guard overwriting.removeValue(forKey: group) != nil, let known = terms[group] else { return false }
        terms[group] = known.filter { $0.key <= last }
        return terms[group]!.count < known.count
    }
}

/// The directory of the test bundle, where SwiftPM also puts the executables it built.
func builtProduct(_ name: String) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name).path
}

@Suite("WAL: crash safety")
struct WALCrashTests {
    /// Kill points in the default test run; `RAFTD_WAL_KILL_POINTS` raises it (soak).
    static let killPoints = Int(ProcessInfo.processInfo.environment["RAFTD_WAL_KILL_POINTS"] ?? "") ?? 200

    @Test("WAL: kill -9 at random points never loses an acknowledged record, and leaves nothing damaged readable")
    func killNine() async throws {
        let child = builtProduct("WALCrashChild")
        try #require(
            FileManager.default.isExecutableFile(atPath: child), "build WALCrashChild first (swift build --build-tests)"
        )
        // Off the cooperative pool: this waits on a child process for a minute.
        let outcome = try await onDedicatedThread("raftd-wal-crash") { try Self.crashLoop(child) }
        #expect(outcome.problems.isEmpty, "\(outcome.problems.prefix(10))")
        #expect(outcome.acks > Self.killPoints, "the child acknowledged too little to test anything")
        print(
            "WAL crash test: \(Self.killPoints) kill points, \(outcome.acks) acknowledged operations, \(outcome.tornTails) torn tails cut off, \(outcome.shortened) logs ended inside an unacknowledged overwrite"
        )
    }

    struct CrashOutcome: Sendable {
        var problems: [String] = []
        var acks = 0
        var tornTails = 0
        /// Logs left shorter by the prefix of an unacknowledged overwrite.
        var shortened = 0
    }

    private static func crashLoop(_ child: String) throws -> CrashOutcome {
        var problems: [String] = []
        let dir = try TemporaryDirectory("raftd-wal-crash")
        defer { dir.remove() }
        var model = AckModel()
        var rng = SplitMix64(seed: 0xC0FFEE)
        var totalAcks = 0
        var tornTails = 0
        var shortened = 0
        for point in 0..<Self.killPoints {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: child)
            process.arguments = [dir.path, "\(point)"]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Let it run until a random number of acknowledgements has arrived, then SIGKILL.
            let target = Int(rng.next() % 60)
            var output = Data()
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                output.append(pipe.fileHandleForReading.availableData)
                let acks = output.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
                if acks > target || !process.isRunning { break }
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            output.append(pipe.fileHandleForReading.readDataToEndOfFile())
            let text = String(decoding: output, as: UTF8.self)
            // Only whole lines count: a line cut by the kill was never acknowledged.
            var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
            if !text.hasSuffix("\n"), !lines.isEmpty { lines.removeLast() }
            if lines.contains(where: { $0.hasPrefix("E ") }) {
                problems.append("child failed at kill point \(point): \(lines.filter { $0.hasPrefix("E ") })")
                return CrashOutcome(problems: problems, acks: totalAcks, tornTails: tornTails, shortened: shortened)
            }
            for line in lines {
                model.record(line)
                if line.hasPrefix("A ") || line.hasPrefix("C ") { totalAcks += 1 }
            }

            let log = try SharedLog(directory: dir.path, options: CrashWorkload.options)
            defer { log.close() }
            if log.recoveryReport.tornTail != nil { tornTails += 1 }
            try verify(log, against: model, point: point, problems: &problems)
            for group in CrashWorkload.groups where model.settle(group, last: log.lastIndex(of: group)) {
                shortened += 1
            }
        }
        return CrashOutcome(problems: problems, acks: totalAcks, tornTails: tornTails, shortened: shortened)
    }

    private static func verify(
        _ log: SharedLog, against model: AckModel, point: Int, problems: inout [String]
    ) throws {
        for group in CrashWorkload.groups {
            let first = log.firstIndex(of: group)
            let last = log.lastIndex(of: group)
            if let compacted = model.compacted[group], !(first > compacted) {
                problems.append("kill point \(point): \(group) lost an acknowledged compaction")
            }
            let entries = first <= last ? try log.entries(of: group, from: first, to: last.next, maxBytes: .max) : []
            var previousTerm = Term.zero
            for entry in entries {
                // Every durable entry, acknowledged or not, is one the child wrote, intact.
                if entry.payload != CrashWorkload.payload(group: group, index: entry.index, term: entry.term) {
                    problems.append("kill point \(point): \(group) entry \(entry.index) damaged")
                }
                if entry.term < previousTerm {
                    problems.append("kill point \(point): \(group) terms go down at \(entry.index)")
                }
                previousTerm = entry.term
            }
            for (index, term) in model.terms[group] ?? [:] where index >= first {
                // The prefix of an unacknowledged overwrite: the log may end from its first index - 1.
                if let from = model.overwriting[group], index >= from, last >= from.previous, index > last { continue }
                guard index <= last else {
                    problems.append("kill point \(point): \(group) lost acknowledged entry \(index) (last \(last))")
                    continue
                }
                let found = entries[Int(index.rawValue - first.rawValue)]
                // A later overwrite may have become durable without being acknowledged.
                if found.term < term {
                    problems.append(
                        "kill point \(point): \(group) entry \(index) has term \(found.term) < acknowledged \(term)")
                }
            }
        }
    }
}

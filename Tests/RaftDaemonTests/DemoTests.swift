import Foundation
import RaftEngine
import RaftTesting
import Testing

/// The README's main command, small: `raftd demo` starts three `raftd serve` processes,
/// writes, pushes and clones with git, kills the busiest leader with kill -9, restarts it,
/// checks every acknowledged write on every replica, and says so in its JSON summary. In
/// the serialized cluster suite: three more processes beside that suite's three and the
/// Git suites' would only measure two overloaded cores.
extension DaemonClusterTests {
    @Test("Daemon: raftd demo (12 partitions, 1 s of writes) exits 0 with every check held, and its summary is JSON")
    func demoRuns() throws {
        let binary = raftdBinary()
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build raftd first (swift build)")
        let scratch = try TemporaryDirectory("raftd-demo-test")
        defer { scratch.remove() }
        var demo = Subprocess(executable: binary, environment: ProcessInfo.processInfo.environment)
        demo.timeoutMilliseconds = 240_000
        demo.maximumErrorBytes = 1 << 20
        let outcome = try demo.run([
            "demo", "--partitions", "12", "--seconds", "1", "--writers", "8", "--dir", scratch.path + "/d", "--format",
            "json",
        ])
        let out = String(decoding: outcome.standardOutput, as: UTF8.self)
        let err = String(decoding: outcome.standardError, as: UTF8.self)
        #expect(
            outcome.succeeded,
            "raftd demo exited \(outcome.exitCode.map { "\($0)" } ?? "by a signal"): \(err.suffix(3000))")
        let line = out.split(separator: "\n").last.map(String.init) ?? ""
        let summary = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
        #expect(summary["ok"] as? Bool == true, "\(line)")
        #expect((summary["checked_writes"] as? Int ?? 0) > 12, "\(line)")
        #expect(summary["checked_replicas"] as? Int == 36, "\(line)")
        #expect(summary["killed_node_led"] as? Int ?? 0 > 0, "\(line)")
        #expect(summary["restart_elections"] as? Int == 0, "the restarted node caught up without an election: \(line)")
        #expect(summary["git_commits"] as? Int == 40, "\(line)")
        // The story went to standard error, naming each step.
        for step in [
            "created 12 partitions", "git: pushed", "git: cloned", "quiesced:", "killed node", "restarted node",
        ] {
            #expect(err.contains(step), "no '\(step)' in: \(err.suffix(2000))")
        }
    }
}

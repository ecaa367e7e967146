import ArgumentParser
import RaftEngine

/// `raftd wal verify` and `raftd wal dump`: offline inspection of a storage's WAL.
struct WALCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wal",
        abstract: "Inspect a storage's write-ahead log (read-only; safe on a stopped storage).",
        subcommands: [Verify.self, Dump.self]
    )

    struct StorageOptions: ParsableArguments {
        @Option(help: "The storage root (the WAL is in <storage>/+raft/wal).")
        var storage: String

        @Option(help: "Output format: text or json.")
        var format: OutputFormat = .text

        var walDirectory: String { StorageLayout(root: storage).walDirectory }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every segment, batch and record checksum; exit 1 on corruption.")

        @OptionGroup var options: StorageOptions

        func run() throws {
            let summary: WALInspector.Summary
            do {
                summary = try WALInspector(directory: options.walDirectory).scan()
            } catch {
                throw ValidationError("cannot read \(options.walDirectory): \(error)")
            }
            switch options.format {
            case .text:
                print("segments: \(summary.segments)  batches: \(summary.batches)  records: \(summary.records)")
                print("groups: \(summary.groups)  live entries: \(summary.entries)  bytes: \(summary.bytes)")
                for type in WALRecordType.allCases { print("  \(type): \(summary.recordsByType[type] ?? 0)") }
                if let torn = summary.tornTail {
                    print("torn tail: \(torn.file) at offset \(torn.offset) (\(torn.reason)); recovery will cut it off")
                }
                if let corruption = summary.corruption {
                    print("CORRUPT: \(corruption)")
                } else {
                    print("ok")
                }
            case .json:
                var fields = [
                    "\"segments\":\(summary.segments)", "\"batches\":\(summary.batches)",
                    "\"records\":\(summary.records)", "\"groups\":\(summary.groups)", "\"entries\":\(summary.entries)",
                    "\"bytes\":\(summary.bytes)", "\"healthy\":\(summary.isHealthy)",
                ]
                fields.append(
                    "\"tornTail\":"
                        + (summary.tornTail.map { JSONText.quote("\($0.file)@\($0.offset): \($0.reason)") } ?? "null"))
                fields.append("\"corruption\":" + (summary.corruption.map { JSONText.quote("\($0)") } ?? "null"))
                print("{" + fields.joined(separator: ",") + "}")
            }
            if !summary.isHealthy { throw ExitCode(1) }
        }
    }

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every record (JSON: one object per line), optionally of one group.")

        @OptionGroup var options: StorageOptions

        @Option(help: "Only the records of this group (its local ID).")
        var group: UInt64?

        func run() throws {
            let summary: WALInspector.Summary
            do {
                summary = try WALInspector(directory: options.walDirectory).scan { record in
                    if let group, record.group.rawValue != group { return }
                    switch options.format {
                    case .text:
                        print(
                            "\(record.segment)@\(record.offset) batch=\(record.batch) \(record.type) group=\(record.group.rawValue) term=\(record.term) index=\(record.index) kind=\(record.kind) bytes=\(record.length)"
                        )
                    case .json:
                        print(
                            "{\"segment\":\(JSONText.quote(record.segment)),\"offset\":\(record.offset),\"batch\":\(record.batch),\"type\":\(JSONText.quote(record.type.description)),\"group\":\(record.group.rawValue),\"term\":\(record.term.rawValue),\"index\":\(record.index.rawValue),\"kind\":\(record.kind),\"bytes\":\(record.length)}"
                        )
                    }
                }
            } catch {
                throw ValidationError("cannot read \(options.walDirectory): \(error)")
            }
            if let corruption = summary.corruption {
                print("CORRUPT: \(corruption)")
                throw ExitCode(1)
            }
        }
    }
}

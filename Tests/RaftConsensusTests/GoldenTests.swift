import Foundation
import Testing

/// One `command / ---- / expected output` block of a golden script.
struct GoldenBlock {
    var comments: [String]
    var command: String
    var expected: [String]
}

/// Parses the datadriven-style format: comment lines (`#`) and blank lines between blocks,
/// a command line, a `----` line, then expected output up to the next blank line.
func parseGolden(_ text: String) -> (blocks: [GoldenBlock], trailing: [String]) {
    var blocks: [GoldenBlock] = []
    var comments: [String] = []
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    var i = 0
    while i < lines.count {
        let line = lines[i]
        if line.hasPrefix("#") { comments.append(line); i += 1; continue }
        if line.trimmingCharacters(in: .whitespaces).isEmpty { i += 1; continue }
        let command = line
        i += 1
        precondition(i < lines.count && lines[i] == "----", "expected ---- after '\(command)'")
        i += 1
        var expected: [String] = []
        while i < lines.count && !lines[i].isEmpty {
            expected.append(lines[i])
            i += 1
        }
        blocks.append(GoldenBlock(comments: comments, command: command, expected: expected))
        comments = []
    }
    return (blocks, comments)
}

func renderGolden(_ blocks: [GoldenBlock], trailing: [String]) -> String {
    var out: [String] = []
    for b in blocks {
        out += b.comments
        out.append(b.command)
        out.append("----")
        out += b.expected
        out.append("")
    }
    out += trailing
    return out.joined(separator: "\n")
}

private let testdataDir: String = {
    let file = #filePath
    let dir = file[..<file.lastIndex(of: "/")!]
    return String(dir) + "/testdata"
}()

private let goldenFiles: [String] = {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: testdataDir)) ?? []
    return files.filter { $0.hasSuffix(".txt") }.sorted()
}()

@Test("Consensus: golden: testdata directory has scripts")
func goldenFilesExist() {
    #expect(goldenFiles.count >= 10, "found \(goldenFiles)")
}

@Test("Consensus: golden interaction scripts", arguments: goldenFiles)
func golden(_ name: String) throws {
    let path = testdataDir + "/" + name
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var (blocks, trailing) = parseGolden(text)
    let env = InteractionEnv()
    let rewrite = ProcessInfo.processInfo.environment["RAFT_REWRITE_GOLDEN"] == "1"
    for i in blocks.indices {
        let actual = env.run(blocks[i].command).split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.isEmpty ? "  " : String($0)
        }
        if rewrite {
            blocks[i].expected = actual
        } else if actual != blocks[i].expected {
            Issue.record(
                """
                \(name): block \(i + 1) '\(blocks[i].command)' differs
                --- expected
                \(blocks[i].expected.joined(separator: "\n"))
                +++ actual
                \(actual.joined(separator: "\n"))
                """)
            return
        }
    }
    if rewrite { try renderGolden(blocks, trailing: trailing).write(toFile: path, atomically: true, encoding: .utf8) }
}

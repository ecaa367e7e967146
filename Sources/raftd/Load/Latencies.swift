import Foundation
import Histogram

/// Latencies of one kind of call, in microseconds, in an HdrHistogram (three significant
/// digits, up to ten minutes): what `raftd bench` and `raftd demo` report.
struct Latencies: Sendable {
    private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)

    var count: UInt64 { histogram.totalCount }

    mutating func record(_ elapsed: Duration) {
        let (seconds, attoseconds) = elapsed.components
        let micros = max(1, min(600_000_000, seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        _ = histogram.record(UInt64(micros))
    }

    mutating func add(_ other: Latencies) { histogram.add(other.histogram) }

    /// A percentile (0...100) in milliseconds.
    func milliseconds(_ percentile: Double) -> Double {
        count == 0 ? 0 : Double(histogram.valueAtPercentile(percentile)) / 1000
    }

    var maxMilliseconds: Double { count == 0 ? 0 : Double(histogram.max) / 1000 }

    /// `p50 1.23 p90 … max …` (ms).
    var text: String {
        "p50 \(Self.ms(milliseconds(50))) p90 \(Self.ms(milliseconds(90))) p99 \(Self.ms(milliseconds(99))) p99.9 \(Self.ms(milliseconds(99.9))) max \(Self.ms(maxMilliseconds))"
    }

    /// The same as JSON members (no braces).
    var jsonMembers: String {
        "\"p50_ms\":\(Self.ms(milliseconds(50))),\"p90_ms\":\(Self.ms(milliseconds(90))),\"p99_ms\":\(Self.ms(milliseconds(99))),\"p999_ms\":\(Self.ms(milliseconds(99.9))),\"max_ms\":\(Self.ms(maxMilliseconds))"
    }

    static func ms(_ value: Double) -> String { String(format: "%.3f", value) }
}

extension Duration {
    /// Seconds as a Double.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}

/// Errors by type, counted (what a load generator reports next to its latencies).
struct ErrorCounts: Sendable {
    private(set) var byType: [String: Int] = [:]
    /// The first message seen of each type (what to look into).
    private(set) var examples: [String: String] = [:]
    var total: Int { byType.values.reduce(0, +) }

    mutating func add(_ type: String, _ n: Int = 1, example: String? = nil) {
        byType[type, default: 0] += n
        if let example, examples[type] == nil { examples[type] = String(example.prefix(200)) }
    }

    mutating func add(_ other: ErrorCounts) {
        for (type, n) in other.byType { add(type, n, example: other.examples[type]) }
    }
    var text: String { byType.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
    var json: String {
        "{" + byType.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }
}

/// A load generator's or probe's failure, said plainly.
struct LoadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

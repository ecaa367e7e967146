import RaftConsensus
import RaftEngine

/// What the crash test's child writes and the parent checks: deterministic payloads, so the
/// parent can verify any entry it finds (acknowledged or not) without knowing the child's
/// schedule.
public enum CrashWorkload {
    public static let groups = (2...33).map { GroupID(UInt64($0)) }
    public static let threads = 4

    public static var options: SharedLog.Options {
        var options = SharedLog.Options()
        options.segmentSize = 128 << 10
        options.maxBatchBytes = 32 << 10
        options.maxQueuedBytes = 256 << 10
        options.maxSegments = 4
        options.cacheBytes = 16 << 10
        return options
    }

    /// The payload of the entry at (group, index, term).
    public static func payload(group: GroupID, index: LogIndex, term: Term) -> [UInt8] {
        var state = group.rawValue &* 0x9E37_79B9_7F4A_7C15 ^ index.rawValue &* 0xBF58_476D_1CE4_E5B9 ^ term.rawValue
        let length = Int((group.rawValue &* 31 &+ index.rawValue &* 7 &+ term.rawValue) % 300)
        var bytes = [UInt8]()
        bytes.reserveCapacity(length)
        for _ in 0..<length {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes.append(UInt8(truncatingIfNeeded: state >> 56))
        }
        return bytes
    }
}

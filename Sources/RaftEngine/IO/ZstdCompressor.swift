import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Streaming zstd compression into caller buffers (snapshot streams compress chunk by chunk
/// without holding a whole snapshot in memory). Frames carry zstd's content checksum.
///
/// Not thread-safe; reuse one per stream.
public final class ZstdCompressor {
    /// The outcome of one `compress` step.
    public struct Step: Equatable, Sendable {
        /// Input bytes consumed.
        public var consumed: Int
        /// Output bytes produced.
        public var produced: Int
        /// True when the frame is complete (only after a `finish` step that flushed everything).
        public var isFrameComplete: Bool
    }

    public static var levels: ClosedRange<Int> { Int(craft_zstd_min_level())...Int(craft_zstd_max_level()) }
    public static let defaultLevel = 3

    public let level: Int
    private let context: OpaquePointer

    public init(level: Int = ZstdCompressor.defaultLevel) throws(CompressionError) {
        guard Self.levels.contains(level) else { throw .invalidLevel(level, range: Self.levels) }
        var created: OpaquePointer?
        let rc = craft_zstd_cctx_create(Int32(level), &created)
        guard rc == 0, let created else {
            throw rc == -ENOMEM ? .outOfMemory : .invalidLevel(level, range: Self.levels)
        }
        self.level = level
        self.context = created
    }

    deinit { craft_zstd_cctx_destroy(context) }

    /// Drops any frame in progress; the next step starts a new frame.
    public func reset() {
        precondition(craft_zstd_cctx_reset(context) == 0, "zstd context reset failed")
    }

    /// Compresses as much of `input` into `output` as fits. With `finish`, the frame is
    /// ended once all input is consumed; call again with the unconsumed input and more
    /// output room until `isFrameComplete`.
    public func compress(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        finish: Bool
    ) throws(CompressionError) -> Step {
        var inPos = 0
        var outPos = 0
        let rc = craft_zstd_compress_stream(
            context, input.baseAddress, input.count, &inPos, output.baseAddress, output.count, &outPos, finish ? 1 : 0)
        if rc < 0 {
            if rc == -Int64(ENOMEM) { throw .outOfMemory }
            throw .corrupt(reason: String(cString: craft_zstd_cctx_error_name(context)))
        }
        return Step(consumed: inPos, produced: outPos, isFrameComplete: finish && rc == 0 && inPos == input.count)
    }

    /// Compresses `input` as one whole frame.
    public func compressFrame(_ input: [UInt8]) throws(CompressionError) -> [UInt8] {
        reset()
        var output: [UInt8] = []
        let chunk = max(Int(craft_zstd_compress_bound(min(input.count, 1 << 20))), 4096)
        var scratch = [UInt8](repeating: 0, count: chunk)
        var offset = 0
        while true {
            let outcome = input.withUnsafeBytes { whole in
                scratch.withUnsafeMutableBytes { out in
                    Result { () throws(CompressionError) in
                        try compress(UnsafeRawBufferPointer(rebasing: whole[offset...]), into: out, finish: true)
                    }
                }
            }
            let step = try outcome.get()
            offset += step.consumed
            output.append(contentsOf: scratch[0..<step.produced])
            if step.isFrameComplete { return output }
        }
    }
}

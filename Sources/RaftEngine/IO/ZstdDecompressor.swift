import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Streaming zstd decompression into caller buffers. Corrupt input is a thrown
/// `CompressionError`, never a crash; a stream that ends inside a frame is `.truncated`.
///
/// Not thread-safe; reuse one per stream.
public final class ZstdDecompressor {
    /// The outcome of one `decompress` step.
    public struct Step: Equatable, Sendable {
        public var consumed: Int
        public var produced: Int
        /// True when a frame has been fully decoded, verified and flushed.
        public var isFrameComplete: Bool
    }

    private let context: OpaquePointer

    public init() throws(CompressionError) {
        var created: OpaquePointer?
        guard craft_zstd_dctx_create(&created) == 0, let created else { throw .outOfMemory }
        self.context = created
    }

    deinit { craft_zstd_dctx_destroy(context) }

    public func reset() {
        precondition(craft_zstd_dctx_reset(context) == 0, "zstd context reset failed")
    }

    /// Decodes as much of `input` into `output` as fits.
    public func decompress(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CompressionError) -> Step {
        var inPos = 0
        var outPos = 0
        let rc = craft_zstd_decompress_stream(
            context, input.baseAddress, input.count, &inPos, output.baseAddress, output.count, &outPos)
        if rc < 0 {
            if rc == -Int64(ENOMEM) { throw .outOfMemory }
            throw .corrupt(reason: String(cString: craft_zstd_dctx_error_name(context)))
        }
        return Step(consumed: inPos, produced: outPos, isFrameComplete: rc == 0)
    }

    /// Decodes a whole stream of one or more frames held in memory, refusing to produce more
    /// than `limit` bytes (a damaged or hostile frame must not exhaust memory).
    public func decompressAll(_ input: [UInt8], limit: Int) throws(CompressionError) -> [UInt8] {
        reset()
        var output: [UInt8] = []
        var scratch = [UInt8](repeating: 0, count: 1 << 17)
        var offset = 0
        var inFrame = false
        while offset < input.count || inFrame {
            let outcome = input.withUnsafeBytes { whole in
                scratch.withUnsafeMutableBytes { out in
                    Result { () throws(CompressionError) in
                        try decompress(UnsafeRawBufferPointer(rebasing: whole[offset...]), into: out)
                    }
                }
            }
            let step = try outcome.get()
            offset += step.consumed
            if output.count + step.produced > limit { throw .outputLimitExceeded(limit: limit) }
            output.append(contentsOf: scratch[0..<step.produced])
            inFrame = !step.isFrameComplete
            // No input left and the decoder produced nothing more: the frame was cut short.
            if inFrame && offset == input.count && step.produced < scratch.count { throw .truncated }
        }
        return output
    }
}

/// A zstd stream that could not be compressed or decompressed.
public enum CompressionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input is not a valid zstd stream (bad magic, bad block, checksum mismatch);
    /// `reason` is zstd's own error name.
    case corrupt(reason: String)
    /// The input ended inside a frame.
    case truncated
    /// The decompressed data would exceed the caller's limit.
    case outputLimitExceeded(limit: Int)
    /// The compression level is outside what the linked zstd accepts.
    case invalidLevel(Int, range: ClosedRange<Int>)
    /// zstd could not allocate its context.
    case outOfMemory

    public var description: String {
        switch self {
        case .corrupt(let reason): "corrupt zstd stream: \(reason)"
        case .truncated: "zstd stream ends inside a frame (truncated)"
        case .outputLimitExceeded(let limit): "decompressed data exceeds the limit of \(limit) bytes"
        case .invalidLevel(let level, let range):
            "zstd level \(level) outside \(range.lowerBound)...\(range.upperBound)"
        case .outOfMemory: "zstd could not allocate a context"
        }
    }
}

import Testing

@testable import RaftEngine

@Suite("zstd")
struct ZstdTests {
    func roundTrip(_ input: [UInt8], level: Int = 3) throws -> [UInt8] {
        let frame = try ZstdCompressor(level: level).compressFrame(input)
        return try ZstdDecompressor().decompressAll(frame, limit: input.count)
    }

    @Test("zstd: round trip of empty, 1 byte and small inputs")
    func small() throws {
        #expect(try roundTrip([]) == [])
        #expect(try roundTrip([42]) == [42])
        let text = Array(String(repeating: "refs/heads/main ", count: 100).utf8)
        #expect(try roundTrip(text) == text)
    }

    @Test("zstd: round trip of incompressible data")
    func incompressible() throws {
        var rng = SplitMix64(seed: 7)
        let data = rng.bytes(1 << 20)
        let frame = try ZstdCompressor().compressFrame(data)
        #expect(frame.count >= data.count)  // random data does not shrink
        #expect(try ZstdDecompressor().decompressAll(frame, limit: data.count) == data)
    }

    @Test("zstd: 64 MiB streamed through 64 KiB buffers round-trips")
    func large() throws {
        // A packfile-like mix: repeated blocks with some random ones.
        var rng = SplitMix64(seed: 64)
        let block = rng.bytes(1 << 16)
        var input = [UInt8]()
        input.reserveCapacity(64 << 20)
        for i in 0..<1024 {
            if i % 16 == 0 { input.append(contentsOf: rng.bytes(1 << 16)) } else { input.append(contentsOf: block) }
        }
        #expect(input.count == 64 << 20)

        let compressor = try ZstdCompressor(level: 1)
        var compressed = [UInt8]()
        var out = [UInt8](repeating: 0, count: 1 << 16)
        var offset = 0
        var done = false
        while !done {
            let end = min(offset + (1 << 16), input.count)
            let step = try input.withUnsafeBytes { whole in
                try out.withUnsafeMutableBytes { buffer in
                    try compressor.compress(
                        UnsafeRawBufferPointer(rebasing: whole[offset..<end]), into: buffer, finish: end == input.count)
                }
            }
            offset += step.consumed
            compressed.append(contentsOf: out[0..<step.produced])
            done = step.isFrameComplete
        }
        #expect(compressed.count < input.count / 4)

        let decompressor = try ZstdDecompressor()
        var restored = [UInt8]()
        restored.reserveCapacity(input.count)
        offset = 0
        var complete = false
        while !complete {
            let end = min(offset + 4096, compressed.count)
            let step = try compressed.withUnsafeBytes { whole in
                try out.withUnsafeMutableBytes { buffer in
                    try decompressor.decompress(UnsafeRawBufferPointer(rebasing: whole[offset..<end]), into: buffer)
                }
            }
            offset += step.consumed
            restored.append(contentsOf: out[0..<step.produced])
            complete = step.isFrameComplete
            if step.consumed == 0 && step.produced == 0 { Issue.record("no progress at \(offset)"); break }
        }
        #expect(restored == input)
    }

    @Test("zstd: a flipped byte anywhere in a frame is rejected, never crashes")
    func corrupted() throws {
        var rng = SplitMix64(seed: 99)
        let input = Array(String(repeating: "0123456789abcdef", count: 4096).utf8) + rng.bytes(4096)
        let frame = try ZstdCompressor().compressFrame(input)
        var rejected = 0
        for position in stride(from: 0, to: frame.count, by: max(1, frame.count / 200)) {
            var damaged = frame
            damaged[position] ^= 0x5A
            do {
                let out = try ZstdDecompressor().decompressAll(damaged, limit: input.count * 2)
                // The content checksum makes an undetected change impossible in practice.
                Issue.record("damage at \(position) of \(frame.count) accepted (\(out.count) bytes)")
            } catch {
                rejected += 1
            }
        }
        #expect(rejected > 0)
    }

    @Test("zstd: garbage is corrupt, a cut frame is truncated, output beyond the limit is refused")
    func badStreams() throws {
        #expect(throws: CompressionError.self) {
            try ZstdDecompressor().decompressAll([1, 2, 3, 4, 5, 6, 7, 8], limit: 100)
        }
        do {
            _ = try ZstdDecompressor().decompressAll(Array("not zstd".utf8), limit: 100)
            Issue.record("garbage accepted")
        } catch {
            guard case .corrupt(let reason) = error else { Issue.record("expected corrupt, got \(error)"); return }
            #expect(!reason.isEmpty)
        }

        let input = Array(String(repeating: "partition ", count: 10_000).utf8)
        let frame = try ZstdCompressor().compressFrame(input)
        for cut in [frame.count - 1, frame.count / 2, 5] {
            #expect(throws: CompressionError.truncated) {
                try ZstdDecompressor().decompressAll(Array(frame[..<cut]), limit: input.count)
            }
        }
        #expect(throws: CompressionError.outputLimitExceeded(limit: 1000)) {
            try ZstdDecompressor().decompressAll(frame, limit: 1000)
        }
    }

    @Test("zstd: two frames in one stream decode to both payloads")
    func concatenated() throws {
        let compressor = try ZstdCompressor()
        let a = Array("first".utf8)
        let b = Array("second".utf8)
        let stream = try compressor.compressFrame(a) + compressor.compressFrame(b)
        #expect(try ZstdDecompressor().decompressAll(stream, limit: 100) == a + b)
    }

    @Test("zstd: levels outside the library's range are refused")
    func levels() {
        #expect(throws: CompressionError.self) { try ZstdCompressor(level: ZstdCompressor.levels.upperBound + 1) }
        #expect(throws: CompressionError.self) { try ZstdCompressor(level: ZstdCompressor.levels.lowerBound - 1) }
        #expect((try? ZstdCompressor(level: 19)) != nil)
    }
}

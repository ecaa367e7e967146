import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What the I/O layer uses on this machine, checked for real: the backend choice and a
/// batched write + fdatasync through it, read back; plus the crc32c, zstd and LMDB in use.
/// Used by `raftd io-probe`.
public struct IOProbe: Sendable {
    public var backend: IOBackendChoice
    public var ioUringFailure: String?
    public var crc32cHardware: Bool
    public var zstdVersion: String
    public var lmdbVersion: String
    public var kernel: String
    public var writeSucceeded: Bool
    public var writeDetail: String
    public var writeMicros: Int

    /// Runs the probe, writing and removing a scratch file under `directory`.
    public static func run(directory: String) -> IOProbe {
        let choice = IOBackendChoice.current
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let z = craft_zstd_version()
        var probe = IOProbe(
            backend: choice,
            ioUringFailure: IOBackendChoice.probeIOUring().map { "\($0)" },
            crc32cHardware: CRC32C.isHardwareAccelerated,
            zstdVersion: "\(z / 10000).\(z / 100 % 100).\(z % 100)",
            lmdbVersion: "\(MDB_VERSION_MAJOR).\(MDB_VERSION_MINOR).\(MDB_VERSION_PATCH)",
            kernel: kernel,
            writeSucceeded: false,
            writeDetail: "",
            writeMicros: 0
        )
        let scratch = "\(directory)/.raftd-io-probe-\(getpid())"
        defer { unlink(scratch) }
        do {
            let file = try DiskFile.open(scratch, .createNew)
            let writer = try BatchWriter(backend: choice.kind, depth: 8)
            let block = [UInt8](repeating: 0x5A, count: 4096)
            let start = MonotonicClock.system.nanoseconds
            try block.withUnsafeBytes { bytes in
                try writer.writeAndSync(
                    file, [PositionedWrite(offset: 0, bytes: bytes), PositionedWrite(offset: 4096, bytes: bytes)])
            }
            let end = MonotonicClock.system.nanoseconds
            var back = [UInt8](repeating: 0, count: 8192)
            let n = try back.withUnsafeMutableBytes { try file.readFully(fromAbsoluteOffset: 0, into: $0) }
            try file.close()
            probe.writeMicros = (end - start) / 1000
            if n == 8192 && back == block + block {
                probe.writeSucceeded = true
                probe.writeDetail = "2 × 4 KiB batched write + fdatasync via \(choice.kind), read back byte-equal"
            } else {
                probe.writeDetail = "read back \(n) bytes that differ from what was written"
            }
        } catch {
            probe.writeDetail = "\(error)"
        }
        return probe
    }

    public var text: String {
        """
        kernel:        \(kernel)
        I/O backend:   \(backend.kind) (\(backend.reason))
        io_uring:      \(ioUringFailure.map { "unavailable: \($0)" } ?? "available")
        crc32c:        \(crc32cHardware ? "hardware instruction" : "software table")
        zstd:          \(zstdVersion)
        lmdb:          \(lmdbVersion)
        durable write: \(writeSucceeded ? "ok" : "FAILED"), \(writeDetail), \(writeMicros) µs
        """
    }

    public var json: String {
        let quote = JSONText.quote
        return """
            {"kernel":\(quote(kernel)),"backend":\(quote(backend.kind.rawValue)),"backendReason":\(quote(backend.reason)),\
            "ioUringAvailable":\(ioUringFailure == nil),"ioUringFailure":\(ioUringFailure.map(quote) ?? "null"),\
            "crc32cHardware":\(crc32cHardware),"zstdVersion":\(quote(zstdVersion)),"lmdbVersion":\(quote(lmdbVersion)),\
            "durableWrite":{"ok":\(writeSucceeded),"detail":\(quote(writeDetail)),"micros":\(writeMicros)}}
            """
    }
}

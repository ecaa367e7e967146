import RaftEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The baseline every log benchmark is compared with, measured in the same run: one writer
/// doing one `pwrite` + one `fdatasync` per record, what a log without group commit does.
/// Writes `recordBytes` per record to a fresh preallocated file at `path` for `seconds`,
/// then removes the file. Returns records/s and the p50/p99 latency in µs.
public func measureSyncBaseline(
    path: String, recordBytes: Int, seconds: Double
) throws -> (perSecond: Double, p50: Double, p99: Double) {
    unlink(path)
    let file = try DiskFile.open(path, .createNew)
    try file.allocate(offset: 0, length: 256 << 20)
    let record = [UInt8](repeating: 7, count: recordBytes)
    var latencies: [Double] = []
    var offset: UInt64 = 0
    let start = now()
    while now() - start < seconds {
        let t0 = now()
        try record.withUnsafeBytes { try file.write(toAbsoluteOffset: offset, $0) }
        try file.syncData()
        latencies.append((now() - t0) * 1e6)
        offset += UInt64(record.count)
    }
    let elapsed = now() - start
    try file.close()
    unlink(path)
    latencies.sort()
    return (Double(latencies.count) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99))
}

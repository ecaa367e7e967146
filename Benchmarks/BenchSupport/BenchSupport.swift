// What every benchmark program shares: exiting on bad input, the monotonic clock,
// percentiles and fixed-width number formatting.

#if canImport(Glibc)
    import Glibc
#endif

/// Prints `program: message` to standard error and exits with status 2.
public func fail(_ program: String, _ message: String) -> Never {
    let line = "\(program): \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

/// Seconds on the monotonic clock.
public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The `p` quantile (0...1) of an ascending array; 0 when empty.
public func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

/// `value` with `decimals` digits after the point.
public func format(_ value: Double, _ decimals: Int = 0) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return decimals == 0 ? "\(Int(rounded))" : "\(rounded)"
}

extension String {
    /// Left-aligned in a column of `width` (at least one space after).
    public func padded(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}

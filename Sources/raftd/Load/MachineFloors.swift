import Foundation
import RaftEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The physical limits a replicated write cannot beat on this machine, measured in the same
/// run as a benchmark: the fdatasync of a 4 KiB append (plain `pwrite` + `fdatasync`, no
/// io_uring, no batching) and a TCP round trip over loopback (1 byte each way, Nagle off,
/// blocking sockets on two threads). `raftd io-probe --floors`.
struct MachineFloors {
    var syncedAppends = Latencies()
    var roundTrip = Latencies()

    static func measure(directory: String, appends: Int = 500, roundTrips: Int = 5000) throws -> MachineFloors {
        var floors = MachineFloors()
        floors.syncedAppends = try fdatasyncAppends(directory: directory, count: appends)
        floors.roundTrip = try loopbackRoundTrips(count: roundTrips)
        return floors
    }

    static func fdatasyncAppends(directory: String, count: Int) throws -> Latencies {
        let path = "\(directory)/.raftd-floors-\(getpid())"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LoadError("open \(path): \(String(cString: strerror(errno)))") }
        defer {
            close(fd)
            unlink(path)
        }
        let block = [UInt8](repeating: 0x5A, count: 4096)
        var samples = Latencies()
        for n in 0..<count {
            let start = ContinuousClock.now
            let written = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, off_t(n * 4096)) }
            guard written == 4096, fdatasync(fd) == 0 else {
                throw LoadError("pwrite/fdatasync in \(directory): \(String(cString: strerror(errno)))")
            }
            samples.record(ContinuousClock.now - start)
        }
        return samples
    }

    static func loopbackRoundTrips(count: Int) throws -> Latencies {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw LoadError("socket: errno \(errno)") }
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(listener, pointer, length) == 0 && listen(listener, 1) == 0
                    && getsockname(listener, pointer, &length) == 0
            }
        }
        guard bound else { throw LoadError("bind/listen on 127.0.0.1: errno \(errno)") }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) == 0 }
        }
        let server = accept(listener, nil, nil)
        guard connected, server >= 0 else { throw LoadError("connect over loopback: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(server, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let echo = Thread {
            var byte: UInt8 = 0
            while recv(server, &byte, 1, 0) == 1 { _ = send(server, &byte, 1, Int32(MSG_NOSIGNAL)) }
            close(server)
        }
        echo.start()
        var samples = Latencies()
        var byte: UInt8 = 1
        for _ in 0..<count {
            let start = ContinuousClock.now
            guard send(client, &byte, 1, Int32(MSG_NOSIGNAL)) == 1, recv(client, &byte, 1, 0) == 1 else {
                throw LoadError("loopback ping-pong: errno \(errno)")
            }
            samples.record(ContinuousClock.now - start)
        }
        shutdown(client, Int32(SHUT_RDWR))
        return samples
    }

    /// A percentile (0...100) in whole microseconds.
    static func micros(_ latencies: Latencies, _ percentile: Double) -> Int {
        Int((latencies.milliseconds(percentile) * 1000).rounded())
    }

    var json: String {
        "{\"fdatasync_4k_append_p50_us\":\(Self.micros(syncedAppends, 50)),\"fdatasync_4k_append_p99_us\":\(Self.micros(syncedAppends, 99)),\"loopback_rtt_p50_us\":\(Self.micros(roundTrip, 50)),\"loopback_rtt_p99_us\":\(Self.micros(roundTrip, 99))}"
    }

    var text: String {
        """
        fdatasync of a 4 KiB append: p50 \(Self.micros(syncedAppends, 50)) µs, p99 \(Self.micros(syncedAppends, 99)) µs (\(syncedAppends.count) appends, pwrite + fdatasync)
        loopback TCP round trip:     p50 \(Self.micros(roundTrip, 50)) µs, p99 \(Self.micros(roundTrip, 99)) µs (\(roundTrip.count) 1-byte ping-pongs)
        """
    }
}

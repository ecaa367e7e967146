import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// CPU time of local processes from /proc: what the load generator reports for the targets
/// it drives when they run on this machine, and for itself.
enum ProcessCPU {
    /// User plus system CPU seconds the process has used so far (nil: gone, or not Linux).
    static func seconds(_ pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The processes listening on these TCP ports of this machine (IPv4 and IPv6), found
    /// through /proc/net/tcp* and the processes' descriptors. Ports nobody here listens on
    /// (remote targets) are skipped. Needs to see the processes' descriptors: the same user,
    /// or root.
    static func listeners(ports: [Int]) -> [Int32] {
        var inodes = Set<String>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // local_address is "ADDR:PORT" in hex; state 0A is LISTEN; inode is field 10.
                guard fields.count > 9, fields[3] == "0A",
                    let portHex = fields[1].split(separator: ":").last, let port = Int(portHex, radix: 16),
                    ports.contains(port)
                else { continue }
                inodes.insert(String(fields[9]))
            }
        }
        guard !inodes.isEmpty, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else {
            return []
        }
        var pids: [Int32] = []
        for entry in entries {
            guard let pid = Int32(entry),
                let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
            else { continue }
            for fd in descriptors {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                    target.hasPrefix("socket:[")
                else { continue }
                if inodes.contains(String(target.dropFirst(8).dropLast())) {
                    pids.append(pid)
                    break
                }
            }
        }
        return pids.sorted()
    }
}

/// CPU used by a set of processes over an interval.
struct CPUMeter {
    let pids: [Int32]
    private var start: [Int32: Double] = [:]

    init(pids: [Int32]) {
        self.pids = pids
        for pid in pids { start[pid] = ProcessCPU.seconds(pid) }
    }

    /// CPU seconds since `init`, summed over the processes still there.
    func used() -> Double {
        pids.reduce(0) { sum, pid in
            guard let before = start[pid] ?? nil, let now = ProcessCPU.seconds(pid) else { return sum }
            return sum + now - before
        }
    }
}

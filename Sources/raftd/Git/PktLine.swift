import Glibc

/// git's pkt-line framing over a blocking descriptor: four hexadecimal digits of length
/// (counting themselves) and the payload; `0000` is a flush. Used to speak git's
/// proc-receive protocol with `raftd-git-hook`, and to write the service line of a ref
/// advertisement.
struct PktLineChannel {
    enum Packet: Equatable {
        case data([UInt8])
        case flush
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// git's own bound for one pkt-line (LARGE_PACKET_MAX).
    static let maximumPacket = 65_520

    let fd: Int32

    /// The next packet; nil at end of stream before a packet began.
    func read() throws(Failure) -> Packet? {
        var header = [UInt8](repeating: 0, count: 4)
        guard try readExactly(&header, allowEOF: true) else { return nil }
        guard let length = Int(String(decoding: header, as: UTF8.self), radix: 16) else {
            throw Failure(description: "not a pkt-line length: \(header)")
        }
        if length == 0 { return .flush }
        guard length > 4, length <= Self.maximumPacket else {
            throw Failure(description: "pkt-line length \(length) out of bounds")
        }
        var payload = [UInt8](repeating: 0, count: length - 4)
        guard try readExactly(&payload, allowEOF: false) else {
            throw Failure(description: "end of stream inside a pkt-line")
        }
        return .data(payload)
    }

    /// Packets up to the next flush (the flush itself not included).
    func readUntilFlush(maximumPackets: Int = 100_000) throws(Failure) -> [[UInt8]] {
        var packets: [[UInt8]] = []
        while true {
            guard let packet = try read() else { throw Failure(description: "end of stream before a flush") }
            switch packet {
            case .flush: return packets
            case .data(let bytes):
                packets.append(bytes)
                guard packets.count <= maximumPackets else {
                    throw Failure(description: "more than \(maximumPackets) packets before a flush")
                }
            }
        }
    }

    func write(_ packets: [Packet]) throws(Failure) {
        var out: [UInt8] = []
        for packet in packets { out += Self.encode(packet) }
        var offset = 0
        while offset < out.count {
            let n = out[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "write: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    static func encode(_ packet: Packet) -> [UInt8] {
        switch packet {
        case .flush: return Array("0000".utf8)
        case .data(let bytes):
            let payload = bytes.prefix(maximumPacket - 4)
            let hex = String(payload.count + 4, radix: 16)
            return Array((String(repeating: "0", count: 4 - hex.count) + hex).utf8) + payload
        }
    }

    static func line(_ text: String) -> Packet { .data(Array((text + "\n").utf8)) }

    private func readExactly(_ buffer: inout [UInt8], allowEOF: Bool) throws(Failure) -> Bool {
        var offset = 0
        while offset < buffer.count {
            let n = buffer[offset...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "read: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                if offset == 0 && allowEOF { return false }
                throw Failure(description: "end of stream after \(offset) of \(buffer.count) bytes")
            }
            offset += n
        }
        return true
    }
}

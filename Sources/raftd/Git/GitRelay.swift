import Foundation
import Glibc
import RaftTransport

/// Relays a push that reached a follower to the partition's leader: one HTTP/1.1 POST
/// over a plain socket from the serving thread, the spooled body sent as it came (with its
/// Content-Encoding and Git-Protocol), the leader's answer streamed back to the client as
/// it arrives. The follower authenticated the client; the URL carries its push ticket.
enum GitRelay {
    /// How long the leader may stay silent (a large push indexes and replicates first).
    static let silenceSeconds = 600

    static func forward(
        _ request: GitRequest, body: String?, to address: PeerAddress, path: String, responder: GitResponder
    ) throws(GitServiceError) {
        let socket = try connect(address)
        defer { close(socket) }
        var bodyFD: Int32 = -1
        var length = 0
        if let body {
            bodyFD = open(body, O_RDONLY | O_CLOEXEC)
            guard bodyFD >= 0 else {
                throw .internalError("reading the spooled push: \(String(cString: strerror(errno)))")
            }
            var info = stat()
            fstat(bodyFD, &info)
            length = Int(info.st_size)
        }
        defer { if bodyFD >= 0 { close(bodyFD) } }
        var head =
            "POST \(path) HTTP/1.1\r\nHost: \(address)\r\nContent-Type: application/x-git-receive-pack-request\r\n"
        head += "Accept: application/x-git-receive-pack-result\r\nContent-Length: \(length)\r\nConnection: close\r\n"
        if request.gzipBody { head += "Content-Encoding: gzip\r\n" }
        if let value = request.gitProtocol { head += "Git-Protocol: \(value)\r\n" }
        head += "\r\n"
        try send(socket, Array(head.utf8), address)
        if bodyFD >= 0 {
            var chunk = [UInt8](repeating: 0, count: 1 << 18)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(bodyFD, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                try send(socket, Array(chunk[..<n]), address)
            }
        }
        var reader = Reader(socket: socket, address: address)
        // Status line and headers.
        let statusLine = try reader.line()
        let fields = statusLine.split(separator: " ", maxSplits: 2)
        guard fields.count >= 2, fields[0].hasPrefix("HTTP/1."), let code = Int(fields[1]) else {
            throw GitServiceError(status: .badGateway, message: "the leader \(address) answered with no HTTP status")
        }
        var contentLength: Int? = nil
        var chunked = false
        var contentType = "text/plain; charset=utf-8"
        while true {
            let line = try reader.line()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch name {
            case "content-length": contentLength = Int(value)
            case "transfer-encoding": chunked = value.lowercased().contains("chunked")
            case "content-type": contentType = value
            default: break
            }
        }
        guard code == 200 else {
            let bytes = try reader.body(contentLength: contentLength, chunked: chunked, limit: 64 << 10)
            // Statuses that mean the same here pass through; anything else (a redirect, an
            // authentication request meant for this node, an interim answer) is a bad gateway.
            let passed: Set<Int> = [400, 403, 404, 413, 503, 507]
            throw GitServiceError(
                status: passed.contains(code) ? .init(statusCode: code) : .badGateway,
                message: "the leader (\(address)) answered: "
                    + String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .newlines))
        }
        responder.begin(.ok, contentType: contentType, headers: [("Cache-Control", "no-cache")])
        do {
            try reader.stream(contentLength: contentLength, chunked: chunked) { bytes in
                bytes.withUnsafeBytes { responder.send($0) }
            }
        } catch {
            responder.abort()
            return
        }
        responder.end()
    }

    private static func connect(_ address: PeerAddress) throws(GitServiceError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(address.host, "\(address.port)", &hints, &list) == 0, let first = list else {
            throw GitServiceError(status: .badGateway, message: "cannot resolve the leader's address \(address)")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .internalError("socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: silenceSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        guard Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw GitServiceError(
                status: .badGateway,
                message: "cannot reach the partition's leader at \(address) (\(message)); push again in a few seconds")
        }
        return fd
    }

    private static func send(_ fd: Int32, _ bytes: [UInt8], _ address: PeerAddress) throws(GitServiceError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw GitServiceError(
                    status: .badGateway,
                    message: "the push to the leader at \(address) broke off: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// Buffered reads of the leader's answer.
    private struct Reader {
        let socket: Int32
        let address: PeerAddress
        var buffer: [UInt8] = []
        var start = 0

        init(socket: Int32, address: PeerAddress) {
            self.socket = socket
            self.address = address
        }

        /// More bytes; false at the end of the stream.
        mutating func fill() throws(GitServiceError) -> Bool {
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            var chunk = [UInt8](repeating: 0, count: 1 << 18)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 {
                    throw GitServiceError(
                        status: .gatewayTimeout,
                        message:
                            "the leader at \(address) stopped answering (\(String(cString: strerror(errno)))) after the push was sent: it may still apply; fetch to see, then push again"
                    )
                }
                if n == 0 { return false }
                buffer += chunk[..<n]
                return true
            }
        }

        mutating func line() throws(GitServiceError) -> String {
            while true {
                if let newline = buffer[start...].firstIndex(of: 0x0A) {
                    var end = newline
                    if end > start && buffer[end - 1] == 0x0D { end -= 1 }
                    let text = String(decoding: buffer[start..<end], as: UTF8.self)
                    start = newline + 1
                    return text
                }
                guard buffer.count - start < 64 << 10 else {
                    throw GitServiceError(status: .badGateway, message: "the leader's answer has an overlong line")
                }
                guard try fill() else {
                    throw GitServiceError(
                        status: .badGateway, message: "the leader at \(address) closed the connection")
                }
            }
        }

        mutating func take(_ count: Int) throws(GitServiceError) -> [UInt8] {
            while buffer.count - start < count {
                guard try fill() else {
                    throw GitServiceError(status: .badGateway, message: "the leader's answer was cut short")
                }
            }
            let bytes = Array(buffer[start..<start + count])
            start += count
            return bytes
        }

        /// The body, passed on in pieces as it arrives.
        mutating func stream(
            contentLength: Int?, chunked: Bool, _ sink: ([UInt8]) -> Bool
        ) throws(GitServiceError) {
            let broken = GitServiceError(status: .badGateway, message: "the client went away")
            if chunked {
                while true {
                    let sizeLine = try line()
                    guard let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16), size >= 0 else {
                        throw GitServiceError(status: .badGateway, message: "a damaged chunk from the leader")
                    }
                    if size == 0 {
                        while try !line().isEmpty {}
                        return
                    }
                    try pass(size, sink)
                    _ = try line()
                }
            } else if let contentLength {
                try pass(contentLength, sink)
            } else {
                while true {
                    if buffer.count - start > 0 {
                        guard sink(Array(buffer[start...])) else { throw broken }
                        start = buffer.count
                    }
                    guard try fill() else { return }
                }
            }
        }

        /// Passes the next `count` bytes to `sink` as they arrive.
        private mutating func pass(_ count: Int, _ sink: ([UInt8]) -> Bool) throws(GitServiceError) {
            var left = count
            while left > 0 {
                if buffer.count - start == 0 {
                    guard try fill() else {
                        throw GitServiceError(status: .badGateway, message: "the leader's answer was cut short")
                    }
                }
                let n = min(left, buffer.count - start)
                guard sink(Array(buffer[start..<start + n])) else {
                    throw GitServiceError(status: .badGateway, message: "the client went away")
                }
                start += n
                left -= n
            }
        }

        mutating func body(contentLength: Int?, chunked: Bool, limit: Int) throws(GitServiceError) -> [UInt8] {
            var all: [UInt8] = []
            try stream(contentLength: contentLength, chunked: chunked) { bytes in
                all += bytes.prefix(max(0, limit - all.count))
                return true
            }
            return all
        }
    }
}

import Foundation
import RaftClient
import RaftEngine
import RaftTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What a git command did (the client runner the demo uses too).
typealias GitRun = GitOutcome

@discardableResult
func runGit(_ arguments: [String], in directory: String, timeout: Double = 300) throws -> GitRun {
    try ClientGit.run(arguments, in: directory, timeout: timeout)
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
func httpRequest(
    _ endpoint: String, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = []
) throws -> (status: Int, body: [UInt8]) {
    let port = Int(endpoint.split(separator: ":").last!)!
    let socket = try TCPSocket(port: port)
    var head = "\(method) \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if method == "POST" { head += "Content-Length: \(body.count)\r\n" }
    socket.send(Array((head + "\r\n").utf8) + body)
    let answer = socket.readAll()
    let text = String(decoding: answer.prefix(200), as: UTF8.self)
    let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
    guard let split = answer.firstRange(of: Array("\r\n\r\n".utf8)) else { return (status, []) }
    var content = Array(answer[split.upperBound...])
    if String(decoding: answer[..<split.lowerBound], as: UTF8.self).lowercased().contains("transfer-encoding: chunked")
    {
        content = dechunk(content)
    }
    return (status, content)
}

private func dechunk(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        guard let end = bytes[i...].firstRange(of: Array("\r\n".utf8)) else { break }
        let size = Int(String(decoding: bytes[i..<end.lowerBound], as: UTF8.self), radix: 16) ?? 0
        if size == 0 { break }
        out += bytes[end.upperBound..<min(bytes.count, end.upperBound + size)]
        i = end.upperBound + size + 2
    }
    return out
}

/// The Location header of a GET (a redirect), with the cluster's token from `token`.
func rawLocation(_ endpoint: String, _ path: String, token: String) throws -> String {
    let port = Int(endpoint.split(separator: ":").last!)!
    let socket = try TCPSocket(port: port)
    socket.send(
        Array(
            "GET \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n"
                .utf8))
    let text = String(decoding: socket.readAll(), as: UTF8.self)
    for line in text.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("location:") {
        return String(line.dropFirst("location:".count)).trimmingCharacters(in: .whitespaces)
    }
    throw DaemonTestError("no Location in: \(text.prefix(300))")
}

func pktLine(_ text: String) -> [UInt8] {
    let hex = String(text.utf8.count + 4, radix: 16)
    return Array((String(repeating: "0", count: 4 - hex.count) + hex + text).utf8)
}

import GRPCCore
import GRPCNIOTransportHTTP2
import RaftAPI
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a raftd call failed with: the API's error code, the server's message, and for
/// NOT_LEADER the leader's address, for REFERENCE_MISMATCH the reference's values.
public struct RaftClientError: Error, Sendable, CustomStringConvertible {
    public var code: Raftd_V1_Error.Code
    public var message: String
    public var leaderAddress: String
    public var mismatch: Raftd_V1_ReferenceMismatch?
    /// With `membershipRefused`: why (change_in_flight, not_caught_up, storage_unknown,
    /// storage_taken, node_taken, member_unknown, would_lose_quorum, removing_leader).
    public var refusal = ""

    public init(_ error: Raftd_V1_Error) {
        code = error.code
        message = error.message
        leaderAddress = error.leaderAddress
        mismatch = error.code == .referenceMismatch ? error.mismatch : nil
        refusal = error.refusal
    }

    init(code: Raftd_V1_Error.Code, message: String) {
        self.code = code
        self.message = message
        leaderAddress = ""
    }

    /// Reads the typed error a server puts in a gRPC status's metadata (`raftd-error`).
    init(_ rpc: RPCError) {
        var error = Raftd_V1_Error()
        error.message = rpc.message
        let code = rpc.metadata[stringValues: "raftd-error"].first(where: { _ in true })
        switch code {
        case "notLeader": error.code = .notLeader
        case "referenceMismatch": error.code = .referenceMismatch
        case "notFound": error.code = .notFound
        case "alreadyExists": error.code = .alreadyExists
        case "invalid": error.code = .invalid
        case "unknownOutcome": error.code = .unknownOutcome
        case "unavailable": error.code = .unavailable
        case "notYetApplied": error.code = .notYetApplied
        case "internal": error.code = .internal
        case "membershipRefused":
            error.code = .membershipRefused
            error.refusal = rpc.metadata[stringValues: "raftd-refusal"].first(where: { _ in true }) ?? ""
        default:
            // No raftd code: the transport failed (node down, connection reset) or the
            // token was refused.
            // Whether such a call reached the server is unknown: `transportFailure` says
            // so, and `routed` retries it only when the call is idempotent.
            switch rpc.code {
            case .unauthenticated: error.code = .invalid
            case .unavailable, .deadlineExceeded, .cancelled: error.code = .unknownOutcome
            default: error.code = .internal
            }
            error.message = "\(rpc.code): \(rpc.message)"
            let cause = "\(rpc.message) \(rpc.cause.map { "\($0)" } ?? "")"
            if ["connection preface", "SSL", "TLS", "certificate"].contains(where: cause.contains) {
                error.message +=
                    " (TLS must match on both ends: a cluster with TLS needs the CA that signed its nodes' certificates, --tls-ca-file or RaftClient.TLS; one without TLS needs neither)"
            }
        }
        error.leaderAddress = rpc.metadata[stringValues: "raftd-leader"].first(where: { _ in true }) ?? ""
        if error.code == .referenceMismatch {
            error.mismatch.reference = rpc.metadata[stringValues: "raftd-mismatch-reference"].first { _ in true } ?? ""
            error.mismatch.expectedOid = rpc.metadata[stringValues: "raftd-mismatch-expected"].first { _ in true } ?? ""
            error.mismatch.actualOid = rpc.metadata[stringValues: "raftd-mismatch-actual"].first { _ in true } ?? ""
        }
        self.init(error)
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let mismatch {
            text += " (\(mismatch.reference): expected \(mismatch.expectedOid), found \(mismatch.actualOid))"
        }
        return text
    }
}

/// The raftd client: connections to the cluster's gRPC endpoints, a routing cache per
/// repository (which endpoint leads its partition), NotLeader hints followed, retries with
/// back-off for calls that are safe to repeat, and the batch stream that carries many
/// concurrent callers' requests in few messages.
///
///     let client = try RaftClient(endpoints: ["127.0.0.1:17101"], token: token)
///     defer { client.close() }
///     let lsn = try await client.updateReferences(request)
public final class RaftClient: Sendable {
    public let endpoints: [String]
    let token: String
    /// How long one call may spend following leaders and retrying.
    public let deadline: Duration

    private let connections = Mutex<[String: Connection]>([:])
    private let routes = Mutex<[String: String]>([:])
    private let closed = Atomic<Bool>(false)

    /// TLS to the nodes' gRPC ports: the CA certificate (PEM) that signed their
    /// certificates. Each server's certificate must also name the address dialled.
    public struct TLS: Sendable {
        public var caFile: String
        public init(caFile: String) { self.caFile = caFile }
    }

    /// Whether connections use TLS (nil: plaintext).
    public let tls: TLS?

    /// `endpoints`: host:port of any of the cluster's nodes (one is enough: NotLeader
    /// answers name the others).
    public init(endpoints: [String], token: String, deadline: Duration = .seconds(15), tls: TLS? = nil) throws {
        guard !endpoints.isEmpty else { throw RaftClientError(code: .invalid, message: "no endpoints given") }
        for endpoint in endpoints { _ = try Self.parse(endpoint) }
        if let tls, access(tls.caFile, R_OK) != 0 {
            throw RaftClientError(
                code: .invalid, message: "TLS CA file \(tls.caFile) does not exist or is not readable")
        }
        self.endpoints = endpoints
        self.token = token.trimmingTrailingNewline
        self.deadline = deadline
        self.tls = tls
    }

    /// Closes every connection; calls in flight fail.
    public func close() {
        closed.store(true, ordering: .relaxed)
        let all = connections.withLock { connections in
            defer { connections = [:] }
            return Array(connections.values)
        }
        for connection in all { connection.close() }
    }

    static func parse(_ endpoint: String) throws -> (host: String, port: Int) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]),
            (1...65535).contains(port), colon > endpoint.startIndex
        else {
            throw RaftClientError(code: .invalid, message: "endpoint '\(endpoint)' is not host:port")
        }
        return (String(endpoint[..<colon]), port)
    }

    func connection(_ endpoint: String) throws -> Connection {
        guard !closed.load(ordering: .relaxed) else {
            throw RaftClientError(code: .invalid, message: "the client is closed")
        }
        if let existing = connections.withLock({ $0[endpoint] }) { return existing }
        let (host, port) = try Self.parse(endpoint)
        let made = try Connection(host: host, port: port, token: token, tls: tls, timeout: deadline)
        let (chosen, extra) = connections.withLock { connections -> (Connection, Connection?) in
            if let existing = connections[endpoint] { return (existing, made) }
            connections[endpoint] = made
            return (made, nil)
        }
        extra?.close()
        return chosen
    }

    var metadata: Metadata { ["authorization": "Bearer \(token)"] }

    // MARK: routing and retries

    /// The endpoint to try first for `key` (a repository path; "" for any).
    func endpoint(for key: String) -> String { routes.withLock { $0[key] } ?? endpoints[0] }

    func learn(_ key: String, leader: String) {
        guard !key.isEmpty, !leader.isEmpty else { return }
        routes.withLock { routes in
            if routes.count > 100_000 { routes.removeAll() }
            routes[key] = leader
        }
    }

    /// Runs `call` at the endpoint for `key`, following NotLeader hints; retries with
    /// back-off while the error says nothing was done (NOT_LEADER, UNAVAILABLE) — and, for
    /// `idempotent` calls, also when the outcome is unknown — until the deadline.
    func routed<T: Sendable>(
        _ key: String, idempotent: Bool, _ call: @Sendable (Connection) async throws -> T
    ) async throws -> T {
        let clock = ContinuousClock()
        let end = clock.now + deadline
        var target = endpoint(for: key)
        var attempt = 0
        var rotation = 0
        while true {
            do {
                let result = try await call(try connection(target))
                if !key.isEmpty { learn(key, leader: target) }
                return result
            } catch let error as RaftClientError {
                attempt += 1
                let retryable: Bool
                switch error.code {
                case .notLeader, .unavailable, .notYetApplied: retryable = true
                case .unknownOutcome: retryable = idempotent
                default: retryable = false
                }
                guard retryable, clock.now < end else { throw error }
                if error.code == .notLeader, !error.leaderAddress.isEmpty, error.leaderAddress != target {
                    target = error.leaderAddress
                    learn(key, leader: target)
                    continue
                }
                // No hint (no leader yet, node down): back off, then try the next endpoint.
                rotation += 1
                if error.code == .unavailable || error.leaderAddress.isEmpty {
                    target = endpoints[rotation % endpoints.count]
                }
                let backoff = min(500, 10 << min(attempt, 6))
                try await Task.sleep(for: .milliseconds(Int.random(in: backoff / 2...backoff)))
            }
        }
    }

    /// Runs a unary call, turning its gRPC status into `RaftClientError`.
    static func unary<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RPCError {
            throw RaftClientError(error)
        } catch let error as RaftClientError {
            throw error
        } catch {
            throw RaftClientError(code: .unknownOutcome, message: "\(error)")
        }
    }
}

extension String {
    var trimmingTrailingNewline: String {
        var text = self
        while text.last == "\n" || text.last == "\r" || text.last == " " { text.removeLast() }
        return text
    }
}

import GRPCCore
import RaftAPI
import RaftEngine

/// Turns engine errors into the API's typed `Error` (batch answers) and gRPC statuses
/// (unary calls), the same classification for both.
struct APIErrors: Sendable {
    let server: RaftServer

    func error(_ error: HostError) -> Raftd_V1_Error {
        var out = Raftd_V1_Error()
        out.message = "\(error)"
        switch error {
        case .notLeader(_, let node):
            out.code = .notLeader
            out.leaderAddress = node.flatMap(server.clientAddress(of:)) ?? ""
            out.message =
                out.leaderAddress.isEmpty
                ? "not leader, and no leader is known yet; retry shortly"
                : "not leader; the leader is at \(out.leaderAddress)"
        case .refused(let reason):
            if case .notLeader = reason {
                out.code = .notLeader
                out.message = "not leader; no leader known yet"
            } else {
                out.code = error.isRetryable ? .unavailable : .invalid
            }
        case .partitionNotFound: out.code = .notFound
        case .invalid: out.code = .invalid
        // A proposal answered with these may still commit (appended before the leader
        // failed, stepped down or stopped): the client must read before retrying.
        case .timedOut, .lostLeadership, .replicaFailed, .stopped: out.code = .unknownOutcome
        case .overloaded, .unreachable: out.code = .unavailable
        case .membership(let refusal):
            out.code = .membershipRefused
            out.refusal = refusal.code
        }
        return out
    }

    func error(_ error: PartitionWriteError) -> Raftd_V1_Error {
        switch error {
        case .host(let host): return self.error(host)
        case .timedOut(let what):
            var out = Raftd_V1_Error()
            out.code = .unavailable
            out.message = "timed out before proposing: \(what)"
            return out
        case .refused(let partition): return self.error(partition)
        }
    }

    func error(_ error: PartitionReadError) -> Raftd_V1_Error {
        switch error {
        case .host(let host): return self.error(host)
        case .refused(let partition): return self.error(partition)
        case .notYetApplied:
            var out = Raftd_V1_Error()
            out.code = .notYetApplied
            out.message = "\(error)"
            return out
        }
    }

    func error(_ error: PartitionError) -> Raftd_V1_Error {
        var out = Raftd_V1_Error()
        out.message = "\(error)"
        switch error {
        case .referenceStateMismatch(_, let reference, let expected, let actual):
            out.code = .referenceMismatch
            out.mismatch.reference = reference
            out.mismatch.expectedOid = expected.hex
            out.mismatch.actualOid = actual.hex
        case .repositoryExists: out.code = .alreadyExists
        case .repositoryNotFound: out.code = .notFound
        case .storage, .attachment, .corruptEntry: out.code = .internal
        default: out.code = .invalid
        }
        return out
    }

    /// Any error the services meet, by its dynamic type.
    func error(_ error: any Error) -> Raftd_V1_Error {
        switch error {
        case let error as HostError: return self.error(error)
        case let error as PartitionWriteError: return self.error(error)
        case let error as PartitionReadError: return self.error(error)
        case let error as PartitionError: return self.error(error)
        case let error as APIFailure: return error.error
        default:
            var out = Raftd_V1_Error()
            out.code = .internal
            out.message = "\(error)"
            return out
        }
    }

    static func invalid(_ message: String) -> Raftd_V1_Error {
        var out = Raftd_V1_Error()
        out.code = .invalid
        out.message = message
        return out
    }

    static func notFound(_ message: String) -> Raftd_V1_Error {
        var out = Raftd_V1_Error()
        out.code = .notFound
        out.message = message
        return out
    }

    /// The gRPC status of an API error; its code and leader ride in trailing metadata
    /// (`raftd-error`, `raftd-leader`).
    static func rpcError(_ error: Raftd_V1_Error) -> RPCError {
        var metadata: Metadata = ["raftd-error": "\(error.code)"]
        if !error.leaderAddress.isEmpty { metadata.addString(error.leaderAddress, forKey: "raftd-leader") }
        if !error.refusal.isEmpty { metadata.addString(error.refusal, forKey: "raftd-refusal") }
        if error.code == .referenceMismatch {
            metadata.addString(error.mismatch.reference, forKey: "raftd-mismatch-reference")
            metadata.addString(error.mismatch.expectedOid, forKey: "raftd-mismatch-expected")
            metadata.addString(error.mismatch.actualOid, forKey: "raftd-mismatch-actual")
        }
        let code: RPCError.Code
        switch error.code {
        case .notLeader: code = .failedPrecondition
        case .referenceMismatch: code = .aborted
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .invalid: code = .invalidArgument
        case .unknownOutcome: code = .deadlineExceeded
        case .unavailable, .notYetApplied: code = .unavailable
        case .membershipRefused: code = .failedPrecondition
        default: code = .internalError
        }
        return RPCError(code: code, message: error.message, metadata: metadata)
    }
}

/// An API error as a thrown error inside the services.
struct APIFailure: Error {
    let error: Raftd_V1_Error
    init(_ error: Raftd_V1_Error) { self.error = error }
}

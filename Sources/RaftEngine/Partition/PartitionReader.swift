import RaftConsensus

/// How fresh a partition read must be.
public enum PartitionReadConsistency: Hashable, Sendable {
    /// Linearizable: a ReadIndex round through the leader.
    case linearizable
    /// Linearizable while clocks drift less than the election timeout: the leader's lease,
    /// without a round trip when it holds one.
    case lease
    /// Whatever this replica has applied, once that reaches `lsn` (read your own write on
    /// any replica, without a Raft round): waits for it, up to the deadline.
    case appliedAtLeast(LogIndex)
}

/// Why a partition read failed.
public enum PartitionReadError: Error, Equatable, Sendable, CustomStringConvertible {
    case host(HostError)
    case refused(PartitionError)
    /// The replica did not apply the requested index before the deadline.
    case notYetApplied(wanted: LogIndex, applied: LogIndex)

    public var description: String {
        switch self {
        case .host(let error): "\(error)"
        case .refused(let error): "\(error)"
        case .notYetApplied(let wanted, let applied):
            "this replica has applied \(applied), not yet \(wanted) (deadline passed)"
        }
    }
}

/// Reads of a partition's repositories at a replica of this node, at the consistency the
/// caller chooses. The answer names the applied index (the LSN) it reflects.
public struct PartitionReader: Sendable {
    public let host: NodeHost
    let machines: @Sendable (PartitionKey) -> PartitionStateMachine?

    public init(host: NodeHost, machines: @escaping @Sendable (PartitionKey) -> PartitionStateMachine?) {
        self.host = host
        self.machines = machines
    }

    /// The references of `repository` (nil when it does not exist) and the index they are at.
    public func references(
        _ key: PartitionKey, repository: RelativePath, consistency: PartitionReadConsistency,
        deadlineMilliseconds: Int = 5_000
    ) async throws(PartitionReadError) -> (lsn: LogIndex, references: [RefName: ObjectID]?) {
        guard let machine = machines(key) else { throw .host(.partitionNotFound(key)) }
        let wanted: LogIndex
        switch consistency {
        case .linearizable, .lease:
            do {
                wanted = try await host.read(key, consistency: consistency == .lease ? .lease : .readIndex)
            } catch {
                throw .host(error)
            }
        case .appliedAtLeast(let lsn):
            wanted = lsn
        }
        let deadline = MonotonicClock.system.nanoseconds + deadlineMilliseconds * 1_000_000
        while machine.appliedIndex < wanted {
            guard MonotonicClock.system.nanoseconds < deadline else {
                throw .notYetApplied(wanted: wanted, applied: machine.appliedIndex)
            }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
        do {
            let (lsn, references) = try machine.read { _ throws(PartitionError) in
                let files = machine.repository(repository)
                guard FileSystem.exists(files.path + "/HEAD") else { return nil as [RefName: ObjectID]? }
                return try storage { () throws(IOError) in try files.references() }
            }
            return (lsn, references)
        } catch {
            throw .refused(error)
        }
    }
}

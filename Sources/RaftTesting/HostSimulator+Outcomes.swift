import Foundation
import RaftConsensus
import RaftEngine

extension HostSimulator {
    /// What the clients of a host simulation saw: acknowledged writes, reads and whether
    /// they were linearizable, and requests not answered yet (for deadline checks).
    public final class Outcomes: @unchecked Sendable {
        let lock = NSLock()
        public var acked: [(key: PartitionKey, index: LogIndex, data: [UInt8])] = []
        /// Per group, the highest index acknowledged so far (reads issued later must see it).
        var highestAcked: [PartitionKey: LogIndex] = [:]
        public var reads = 0
        public var leaseReads = 0
        var staleReads: [String] = []

        /// Requests not answered yet: who took them and their deadline.
        var unanswered: [Int: (node: Int, boot: UInt64, deadlineNanoseconds: Int)] = [:]
        var nextRequest = 0

        func issued(node: Int, boot: UInt64, deadline: Int) -> Int {
            lock.lock()
            defer { lock.unlock() }
            nextRequest += 1
            unanswered[nextRequest] = (node, boot, deadline)
            return nextRequest
        }

        func answered(_ id: Int) {
            lock.lock()
            unanswered[id] = nil
            lock.unlock()
        }

        func record(_ key: PartitionKey, _ data: [UInt8], _ result: Result<LogIndex, HostError>) {
            guard case .success(let index) = result else { return }
            lock.lock()
            acked.append((key, index, data))
            highestAcked[key] = max(highestAcked[key] ?? .zero, index)
            lock.unlock()
        }

        func required(_ key: PartitionKey) -> LogIndex {
            lock.lock()
            defer { lock.unlock() }
            return highestAcked[key] ?? .zero
        }

        /// A read issued when `required` was the highest acknowledged write must return an
        /// index at or above it (linearizable reads see every write acknowledged before them).
        func recordRead(_ key: PartitionKey, lease: Bool, required: LogIndex, _ result: Result<LogIndex, HostError>) {
            guard case .success(let index) = result else { return }
            lock.lock()
            reads += 1
            if lease { leaseReads += 1 }
            if index < required {
                staleReads.append(
                    "\(key): \(lease ? "lease" : "ReadIndex") read returned \(index), below \(required) acknowledged before it was issued"
                )
            }
            lock.unlock()
        }
    }
}

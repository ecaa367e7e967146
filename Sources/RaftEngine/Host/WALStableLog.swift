import Logging
import RaftConsensus

/// One group's view of its storage's shared WAL, as the consensus core reads it: durable
/// entries, terms and bounds come from the WAL's in-memory index (and its cache or
/// segments); the configuration comes from the replica (the metadata store at start).
///
/// The core reads only durable state here: the host calls `advance` after the WAL batch
/// holding a Ready's entries is durable, and the WAL publishes a batch to its index
/// before it completes its waiters.
///
/// A read that fails for any reason other than compaction or a missing index is damage the
/// WAL could not detect at recovery (its records are checksummed, so this is a bug or a
/// failing disk); the core cannot continue without its log, so the process stops with the
/// error, as it does when an fdatasync fails.
final class WALStableLog: StableLog {
    let log: SharedLog
    let group: GroupID
    var confState: ConfState
    /// The durable bounds, cached: the core asks for them constantly, and only this
    /// replica's own writes (reported by `durable(through:)`) and compaction move them.
    /// Invariant: equal to the WAL's bounds for the group whenever the core reads them.
    private(set) var firstIndex: LogIndex
    private(set) var lastIndex: LogIndex
    /// The term at `lastIndex` (asked for on every append sent and received).
    private var lastTerm: Term

    init(log: SharedLog, group: GroupID, confState: ConfState) {
        self.log = log
        self.group = group
        self.confState = confState
        firstIndex = log.firstIndex(of: group)
        let last = log.lastIndex(of: group)
        lastIndex = last
        lastTerm = (try? log.term(of: group, at: last)) ?? .zero
    }

    /// A write of this group whose last entry is `last` is durable: the WAL truncated
    /// anything after it (a conflicting suffix) and holds everything up to it.
    func durable(through last: LogIndex, term: Term) {
        lastIndex = last
        lastTerm = term
        // The WAL holds every write of one turn and storage as one ordered unit; were they
        // ever durable out of order, the cache and the WAL would disagree here.
        let durable = log.lastIndex(of: group)
        precondition(lastIndex == durable, "\(group): durable through \(last) reported, the WAL holds \(durable)")
    }

    func initialState() -> (HardState, ConfState) { (log.hardState(of: group) ?? .empty, confState) }

    func entries(from low: LogIndex, to high: LogIndex, maxBytes: Int) -> Result<[Entry], StableLogError> {
        do {
            let stored = try log.entries(of: group, from: low, to: high, maxBytes: maxBytes)
            var entries: [Entry] = []
            entries.reserveCapacity(stored.count)
            for wal in stored {
                do { entries.append(try EntryCodec.entry(wal)) } catch {
                    fail("decoding \(group) entry \(wal.index)", error)
                }
            }
            return .success(entries)
        } catch {
            switch error {
            case .compacted: return .failure(.compacted)
            case .unavailable: return .failure(.unavailable)
            default: fail("reading \(group) entries \(low)..<\(high)", error)
            }
        }
    }

    func term(at index: LogIndex) -> Result<Term, StableLogError> {
        if index == lastIndex { return .success(lastTerm) }
        do {
            return .success(try log.term(of: group, at: index))
        } catch {
            switch error {
            case .compacted: return .failure(.compacted)
            case .unavailable: return .failure(.unavailable)
            default: fail("reading the term of \(group) entry \(index)", error)
            }
        }
    }

    /// Snapshots arrive with the snapshot issue; until then the log is never compacted
    /// below what followers need, so the core never asks.
    func snapshot() -> Result<Snapshot, StableLogError> { .failure(.snapshotTemporarilyUnavailable) }

    private func fail(_ what: String, _ error: some Error) -> Never {
        Logger(label: "raftd.host").critical(
            "stopping: \(what) failed: \(error). Run `raftd wal verify` on the storage before restarting.")
        fatalError("WAL read failed while \(what): \(error)")
    }
}

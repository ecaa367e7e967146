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
final class WALLogStorage: LogStorage {
    let log: SharedLog
    let group: GroupID
    var confState: ConfState

    init(log: SharedLog, group: GroupID, confState: ConfState) {
        self.log = log
        self.group = group
        self.confState = confState
    }

    func initialState() -> (HardState, ConfState) { (log.hardState(of: group) ?? .empty, confState) }

    func entries(from low: LogIndex, to high: LogIndex, maxBytes: Int) -> Result<[Entry], StorageError> {
        do {
            let stored = try log.entries(of: group, from: low, to: high, maxBytes: maxBytes)
            var entries: [Entry] = []
            entries.reserveCapacity(stored.count)
            for wal in stored {
                do { entries.append(try EntryCodec.entry(wal)) } catch { fail("decoding \(group) entry \(wal.index)", error) }
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

    func term(at index: LogIndex) -> Result<Term, StorageError> {
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

    var firstIndex: LogIndex { log.firstIndex(of: group) }
    var lastIndex: LogIndex { log.lastIndex(of: group) }

    /// Snapshots arrive with the snapshot issue; until then the log is never compacted
    /// below what followers need, so the core never asks.
    func snapshot() -> Result<Snapshot, StorageError> { .failure(.snapshotTemporarilyUnavailable) }

    private func fail(_ what: String, _ error: some Error) -> Never {
        Logger(label: "raftd.host").critical(
            "stopping: \(what) failed: \(error). Run `raftd wal verify` on the storage before restarting.")
        fatalError("WAL read failed while \(what): \(error)")
    }
}

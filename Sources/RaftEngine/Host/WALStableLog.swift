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

    /// The latest snapshot prepared for followers (leader), and who to ask for one.
    var prepared: Snapshot?
    /// Called (on the shard's thread) when the core needs a snapshot and none is prepared
    /// that covers the log's start.
    var snapshotNeeded: (() -> Void)?

    /// A follower behind the log's start needs a snapshot: the prepared one if it covers
    /// the compacted prefix; otherwise one is asked for and the core tries again later
    /// (its next heartbeat response).
    func snapshot() -> Result<Snapshot, StableLogError> {
        if let prepared, prepared.metadata.index >= firstIndex.previous { return .success(prepared) }
        snapshotNeeded?()
        return .failure(.snapshotTemporarilyUnavailable)
    }

    /// A snapshot install's log reset is durable: the log is empty and restarts after it.
    func reset(to metadata: SnapshotMetadata) {
        firstIndex = metadata.index.next
        lastIndex = metadata.index
        lastTerm = metadata.term
        confState = metadata.confState
    }

    /// Entries through `index` are to be compacted: the core no longer reads them (the
    /// WAL still serves them until its compaction record is durable).
    func compacted(through index: LogIndex) {
        precondition(index >= firstIndex.previous && index <= lastIndex)
        firstIndex = index.next
    }

    private func fail(_ what: String, _ error: some Error) -> Never {
        Logger(label: "raftd.host").critical(
            "stopping: \(what) failed: \(error). Run `raftd wal verify` on the storage before restarting.")
        fatalError("WAL read failed while \(what): \(error)")
    }
}

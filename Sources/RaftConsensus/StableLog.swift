/// Why a storage read could not be served.
public enum StableLogError: Error, Hashable, Sendable {
    /// The index precedes the first retained entry; a snapshot covers it.
    case compacted
    /// The index is past the last stored entry.
    case unavailable
    /// A snapshot is being produced; try again later.
    case snapshotTemporarilyUnavailable
}

/// Read access to the caller-owned stable log. The consensus core never writes here: it hands
/// entries out through `Ready` and the caller persists them, then calls `advance`.
///
/// Layout convention: the storage remembers the index and term of the last entry covered by
/// its snapshot, so `term(at: firstIndex - 1)` succeeds (needed to send the first append).
public protocol StableLog: AnyObject {
    /// Hard state and membership to start from.
    func initialState() -> (HardState, ConfState)
    /// Entries in `[low, high)`, truncated to at most `maxBytes` of payload (but always at
    /// least one entry when the range is non-empty).
    func entries(from low: LogIndex, to high: LogIndex, maxBytes: Int) -> Result<[Entry], StableLogError>
    /// Term of the entry at `index`, valid for `firstIndex - 1 ... lastIndex`.
    func term(at index: LogIndex) -> Result<Term, StableLogError>
    /// First index still held as an entry.
    var firstIndex: LogIndex { get }
    /// Last index held (equals `firstIndex - 1` when empty).
    var lastIndex: LogIndex { get }
    /// The most recent snapshot, used to catch up followers behind `firstIndex`.
    func snapshot() -> Result<Snapshot, StableLogError>
}

/// Identifies the log prefix a snapshot replaces.
public struct SnapshotMetadata: Hashable, Sendable, CustomStringConvertible {
    /// Last index covered by the snapshot.
    public var index: LogIndex
    /// Term of the entry at `index`.
    public var term: Term
    /// Membership as of `index`.
    public var confState: ConfState

    public init(index: LogIndex, term: Term, confState: ConfState) {
        self.index = index
        self.term = term
        self.confState = confState
    }

    public var description: String { "index=\(index) term=\(term) \(confState)" }
}

/// A state machine snapshot. The consensus core never looks inside `data`.
public struct Snapshot: Hashable, Sendable, CustomStringConvertible {
    public var metadata: SnapshotMetadata
    /// Opaque application bytes.
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata, data: [UInt8]) {
        self.metadata = metadata
        self.data = data
    }

    /// The empty snapshot of a fresh log.
    public static let empty = Snapshot(
        metadata: SnapshotMetadata(index: .zero, term: .zero, confState: ConfState()), data: [])

    public var isEmpty: Bool { metadata.index == .zero }

    public var description: String { "snapshot(\(metadata) data=\(data.count)B)" }
}

import RaftConsensus

/// How consensus entries are stored as WAL entries. The WAL record's `kind` byte says what
/// the payload is, so the log can be scanned for configuration changes without decoding
/// application data:
///
/// ```
/// kind 0  normal      payload = application bytes (empty for a leader's no-op)
/// kind 1  confChange  payload = transition u8 | count u16 | count x ( op u8 | member u64 )
///                     [ | context length u16 | context ]
///                     little-endian; op 1 addVoter, 2 addLearner, 3 remove;
///                     transition 0 auto, 1 jointImplicit, 2 jointExplicit; the context
///                     (at most 4 KiB) is absent when empty, so older entries decode as is
/// ```
enum EntryCodec {
    static let normalKind: UInt8 = 0
    static let confChangeKind: UInt8 = 1
    /// More changes than any real membership edit: a larger count is damage.
    static let maximumChanges = 64
    /// The largest context of a configuration change (a few storage names in practice).
    static let maximumContextBytes = 4096

    static func walEntry(_ entry: Entry) -> WALEntry {
        switch entry.payload {
        case .normal(let bytes):
            return WALEntry(term: entry.term, index: entry.index, kind: normalKind, payload: bytes)
        case .confChange(let change):
            return WALEntry(term: entry.term, index: entry.index, kind: confChangeKind, payload: encode(change))
        }
    }

    /// Decodes a WAL entry. The WAL verified its checksum, so a failure here means a bug or
    /// a writer of another format, never a torn write.
    static func entry(_ wal: WALEntry) throws(HostError) -> Entry {
        switch wal.kind {
        case normalKind:
            return Entry(term: wal.term, index: wal.index, payload: .normal(wal.payload))
        case confChangeKind:
            return Entry(term: wal.term, index: wal.index, payload: .confChange(try decodeConfChange(wal.payload)))
        default:
            throw .invalid("WAL entry \(wal.index)@\(wal.term) has unknown kind \(wal.kind)")
        }
    }

    static func encode(_ change: ConfChange) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(3 + 9 * change.changes.count)
        switch change.transition {
        case .auto: bytes.append(0)
        case .jointImplicit: bytes.append(1)
        case .jointExplicit: bytes.append(2)
        }
        let count = UInt16(change.changes.count)
        bytes.append(UInt8(count & 0xFF))
        bytes.append(UInt8(count >> 8))
        for single in change.changes {
            switch single {
            case .addVoter: bytes.append(1)
            case .addLearner: bytes.append(2)
            case .remove: bytes.append(3)
            }
            var member = single.member.rawValue
            for _ in 0..<8 {
                bytes.append(UInt8(member & 0xFF))
                member >>= 8
            }
        }
        if !change.context.isEmpty {
            precondition(change.context.count <= maximumContextBytes, "checked when proposed")
            bytes.append(UInt8(change.context.count & 0xFF))
            bytes.append(UInt8(change.context.count >> 8))
            bytes.append(contentsOf: change.context)
        }
        return bytes
    }

    static func decodeConfChange(_ bytes: [UInt8]) throws(HostError) -> ConfChange {
        guard bytes.count >= 3 else { throw .invalid("conf change of \(bytes.count) bytes is too short") }
        let transition: ConfChangeTransition
        switch bytes[0] {
        case 0: transition = .auto
        case 1: transition = .jointImplicit
        case 2: transition = .jointExplicit
        default: throw .invalid("conf change transition \(bytes[0]) is unknown")
        }
        let count = Int(bytes[1]) | Int(bytes[2]) << 8
        let body = 3 + 9 * count
        guard count <= maximumChanges, bytes.count >= body else {
            throw .invalid("conf change with \(count) changes does not fit its \(bytes.count) bytes")
        }
        var context: [UInt8] = []
        if bytes.count > body {
            guard bytes.count >= body + 2 else { throw .invalid("conf change context length is cut off") }
            let length = Int(bytes[body]) | Int(bytes[body + 1]) << 8
            guard length > 0, length <= maximumContextBytes, bytes.count == body + 2 + length else {
                throw .invalid("conf change context of \(length) bytes does not fit its \(bytes.count - body - 2)")
            }
            context = Array(bytes[(body + 2)...])
        }
        var changes: [ConfChangeSingle] = []
        var offset = 3
        for _ in 0..<count {
            let op = bytes[offset]
            var raw: UInt64 = 0
            for shift in 0..<8 { raw |= UInt64(bytes[offset + 1 + shift]) << (8 * UInt64(shift)) }
            offset += 9
            let member = MemberID(raw)
            guard member != .none else { throw .invalid("conf change names member 0") }
            switch op {
            case 1: changes.append(.addVoter(member))
            case 2: changes.append(.addLearner(member))
            case 3: changes.append(.remove(member))
            default: throw .invalid("conf change operation \(op) is unknown")
            }
        }
        return ConfChange(changes, transition: transition, context: context)
    }
}

extension ConfState {
    /// Every member: voters of both majorities and learners (those of the next
    /// configuration included), each once.
    var members: Set<MemberID> { Set(voters + votersOutgoing + learners + learnersNext) }

    /// `member` is the only voter (not joint): it needs no votes but its own to lead.
    func hasOnlyVoter(_ member: MemberID) -> Bool { voters == [member] && votersOutgoing.isEmpty }

    /// The consensus form of a stored configuration.
    package init(_ stored: StoredConfState) {
        self.init(
            voters: stored.voters, votersOutgoing: stored.votersOutgoing, learners: stored.learners,
            learnersNext: stored.learnersNext, autoLeave: stored.autoLeave)
    }
}

extension StoredConfState {
    /// The stored form of a consensus configuration (always valid: the core keeps voters
    /// and learners disjoint and IDs non-zero).
    package init(_ state: ConfState) throws(MetadataError) {
        try self.init(
            voters: state.voters, learners: state.learners, votersOutgoing: state.votersOutgoing,
            learnersNext: state.learnersNext, autoLeave: state.autoLeave)
    }
}

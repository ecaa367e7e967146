import RaftConsensus

/// A register operation as carried in a log entry.
struct RegisterCommand: Equatable {
    enum Kind: UInt8 { case write = 1, cas = 2, sentinel = 3 }
    var kind: Kind
    var key: Int
    var opID: UInt64
    var a: Int
    var b: Int

    func encode() -> [UInt8] {
        var out: [UInt8] = [kind.rawValue, UInt8(key)]
        out.reserveCapacity(26)
        for v in [opID, UInt64(bitPattern: Int64(a)), UInt64(bitPattern: Int64(b))] {
            for s in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> RegisterCommand? {
        guard bytes.count == 26, let kind = Kind(rawValue: bytes[0]) else { return nil }
        func word(_ at: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << UInt64(8 * i) }
            return v
        }
        return RegisterCommand(
            kind: kind, key: Int(bytes[1]), opID: word(2),
            a: Int(Int64(bitPattern: word(10))), b: Int(Int64(bitPattern: word(18))))
    }
}

/// Result of applying a command on one replica.
enum CommandResult: Equatable {
    case ok
    case casFailed
}

/// One simulated member: durable storage survives crashes; the node and state machine do not.
final class SimNode {
    let id: MemberID
    let storage: MemoryStableLog
    var node: RawNode?
    var config: RaftConfig
    /// Register values (the state machine).
    var registers: [Int]
    var applied: LogIndex = .zero
    var confState: ConfState
    /// Results of commands applied since the last drain: (index, term, opID, result).
    var appliedResults: [(LogIndex, Term, UInt64, CommandResult)] = []
    /// ReadStates received since the last drain.
    var readStates: [ReadState] = []
    /// Set when a snapshot was installed since the last drain.
    var installedSnapshotAt: LogIndex?
    var lastSoftRole: RaftRole = .follower
    var becameLeader = false

    init(id: MemberID, config: RaftConfig, initialConf: ConfState, keys: Int) {
        self.id = id
        self.config = config
        self.storage = MemoryStableLog(confState: initialConf)
        self.registers = Array(repeating: 0, count: keys)
        self.confState = initialConf
        start()
    }

    var isUp: Bool { node != nil }

    /// (Re)starts from durable state: state machine from the snapshot, log from storage.
    func start() {
        let snap = storage.latestSnapshot
        registers = SimNode.decodeRegisters(snap.data, count: registers.count)
        applied = snap.metadata.index
        confState = snap.metadata.confState
        var cfg = config
        cfg.applied = applied
        node = RawNode(config: cfg, log: storage)
        lastSoftRole = .follower
    }

    /// Loses everything not in `storage`.
    func crash() { node = nil }

    static func encodeRegisters(_ regs: [Int]) -> [UInt8] {
        var out: [UInt8] = []
        for r in regs {
            let v = UInt64(bitPattern: Int64(r))
            for s in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
        }
        return out
    }

    static func decodeRegisters(_ data: [UInt8], count: Int) -> [Int] {
        if data.isEmpty { return Array(repeating: 0, count: count) }
        precondition(data.count == 8 * count, "bad snapshot data")
        return (0..<count).map { k in
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(data[8 * k + i]) << UInt64(8 * i) }
            return Int(Int64(bitPattern: v))
        }
    }

    /// Takes a local snapshot at the applied index and compacts most of the log before it.
    func snapshotAndCompact(keep: Int) {
        guard applied > storage.latestSnapshot.metadata.index, applied <= storage.lastIndex else { return }
        storage.createSnapshot(at: applied, confState: confState, data: SimNode.encodeRegisters(registers))
        let cut = applied.rawValue > UInt64(keep) ? LogIndex(applied.rawValue - UInt64(keep)) : .zero
        if cut >= storage.firstIndex { storage.compact(through: cut) }
    }

    /// Applies one committed entry. Calls `onApply` so the simulator can check invariants.
    func apply(_ e: Entry, onApply: (Entry) -> Void) {
        precondition(e.index == applied.next, "node \(id) applying \(e.index) after \(applied)")
        onApply(e)
        switch e.payload {
        case .normal(let bytes):
            if let cmd = RegisterCommand.decode(bytes) {
                var result = CommandResult.ok
                switch cmd.kind {
                case .write:
                    registers[cmd.key] = cmd.a
                case .cas:
                    if registers[cmd.key] == cmd.a { registers[cmd.key] = cmd.b } else { result = .casFailed }
                case .sentinel:
                    break
                }
                appliedResults.append((e.index, e.term, cmd.opID, result))
            } else {
                appliedResults.append((e.index, e.term, 0, .ok))
            }
        case .confChange(let cc):
            appliedResults.append((e.index, e.term, 0, .ok))
            confState = node!.applyConfChange(cc)
        }
        applied = e.index
    }
}

/// One completed (or possibly completed) operation in a client history.
public struct HistoryOperation: Sendable, CustomStringConvertible {
    /// Client-visible operation on a compare-and-set register.
    public enum Input: Hashable, Sendable {
        case read
        case write(Int)
        case cas(expected: Int, new: Int)
    }

    /// What the client observed. `unknown` means the outcome was lost (crash, timeout): the
    /// operation may or may not have taken effect.
    public enum Output: Hashable, Sendable {
        case value(Int)
        case ok
        case casFailed
        case unknown
    }

    public var client: Int
    public var key: Int
    public var input: Input
    public var output: Output
    /// Logical time the client invoked the operation.
    public var call: Int
    /// Logical time the client saw the response (`Int.max` for unknown outcomes).
    public var ret: Int

    public init(client: Int, key: Int, input: Input, output: Output, call: Int, ret: Int) {
        self.client = client
        self.key = key
        self.input = input
        self.output = output
        self.call = call
        self.ret = output == .unknown ? Int.max : ret
    }

    public var description: String {
        let r = ret == Int.max ? "∞" : String(ret)
        return "c\(client) k\(key) \(input) -> \(output) [\(call), \(r)]"
    }
}

/// Sequential specification of a compare-and-set register starting at 0.
public enum RegisterModel {
    /// Applies `input` to `state`; returns nil if `output` is impossible from `state`.
    static func step(_ state: Int, _ input: HistoryOperation.Input, _ output: HistoryOperation.Output) -> Int? {
        switch input {
        case .read:
            if output == .unknown { return state }
            return output == .value(state) ? state : nil
        case .write(let v):
            return v
        case .cas(let expected, let new):
            switch output {
            case .ok: return state == expected ? new : nil
            case .casFailed: return state != expected ? state : nil
            case .unknown: return state == expected ? new : state
            case .value: return nil
            }
        }
    }
}

/// Wing–Gong linearizability checker with Lowe's memoization on (linearized set, state),
/// in the style of Porcupine. Histories are partitioned per key (registers are independent).
public enum LinearizabilityChecker {
    /// Outcome of a check.
    public enum Verdict: Hashable, Sendable {
        case linearizable
        /// The key whose sub-history admits no linearization.
        case notLinearizable(key: Int)
    }

    public static func check(_ history: [HistoryOperation]) -> Verdict {
        let keys = Array(Set(history.map(\.key))).sorted()
        for k in keys where !checkSingle(history.filter { $0.key == k }) {
            return .notLinearizable(key: k)
        }
        return .linearizable
    }

    private struct CacheKey: Hashable {
        var bits: [UInt64]
        var state: Int
    }

    /// Checks one register's history.
    static func checkSingle(_ ops: [HistoryOperation]) -> Bool {
        let n = ops.count
        if n == 0 { return true }
        // Events: call = op id, return = op id + n. Sorted by time; at equal times calls come
        // first so that touching intervals count as concurrent (the permissive reading).
        var events: [(time: Int, isReturn: Bool, op: Int)] = []
        for (i, op) in ops.enumerated() {
            events.append((op.call, false, i))
            events.append((op.ret, true, i))
        }
        events.sort { a, b in
            if a.time != b.time { return a.time < b.time }
            if a.isReturn != b.isReturn { return !a.isReturn }
            return a.op < b.op
        }
        // Doubly linked list over events with a sentinel head at position 0.
        let count = events.count + 1
        var next = Array(repeating: -1, count: count)
        var prev = Array(repeating: -1, count: count)
        var callPos = Array(repeating: 0, count: n)
        var retPos = Array(repeating: 0, count: n)
        for i in 0..<count {
            next[i] = i + 1 < count ? i + 1 : -1
            prev[i] = i - 1
        }
        for (i, e) in events.enumerated() {
            if e.isReturn { retPos[e.op] = i + 1 } else { callPos[e.op] = i + 1 }
        }
        func unlink(_ p: Int) {
            next[prev[p]] = next[p]
            if next[p] != -1 { prev[next[p]] = prev[p] }
        }
        func relink(_ p: Int) {
            next[prev[p]] = p
            if next[p] != -1 { prev[next[p]] = p }
        }
        var bits = Array(repeating: UInt64(0), count: (n + 63) / 64)
        var state = 0
        var cache = Set<CacheKey>()
        var stack: [(op: Int, state: Int)] = []
        var cursor = next[0]
        while next[0] != -1 {
            if cursor == -1 { return false }
            let e = events[cursor - 1]
            if !e.isReturn {
                let op = ops[e.op]
                if let newState = RegisterModel.step(state, op.input, op.output) {
                    var newBits = bits
                    newBits[e.op / 64] |= 1 << UInt64(e.op % 64)
                    if cache.insert(CacheKey(bits: newBits, state: newState)).inserted {
                        stack.append((e.op, state))
                        state = newState
                        bits = newBits
                        unlink(callPos[e.op])
                        unlink(retPos[e.op])
                        cursor = next[0]
                        continue
                    }
                }
                cursor = next[cursor]
            } else {
                // An operation returned before we could linearize it: backtrack.
                guard let top = stack.popLast() else { return false }
                state = top.state
                bits[top.op / 64] &= ~(1 << UInt64(top.op % 64))
                relink(retPos[top.op])
                relink(callPos[top.op])
                cursor = next[callPos[top.op]]
            }
        }
        return true
    }
}

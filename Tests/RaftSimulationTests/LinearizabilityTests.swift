import RaftSimulation
import Testing

private typealias Op = HistoryOperation

@Test("Simulation: linearizability checker: accepts a concurrent linearizable history")
func acceptsLinearizable() {
    let h = [
        Op(client: 0, key: 0, input: .write(1), output: .ok, call: 0, ret: 10),
        Op(client: 1, key: 0, input: .read, output: .value(1), call: 5, ret: 12),  // overlaps the write
        Op(client: 2, key: 0, input: .read, output: .value(0), call: 1, ret: 3),  // before the write took effect
        Op(client: 1, key: 0, input: .cas(expected: 1, new: 2), output: .ok, call: 13, ret: 14),
        Op(client: 2, key: 0, input: .cas(expected: 1, new: 3), output: .casFailed, call: 15, ret: 16),
        Op(client: 0, key: 0, input: .read, output: .value(2), call: 17, ret: 18),
    ]
    #expect(LinearizabilityChecker.check(h) == .linearizable)
}

@Test("Simulation: linearizability checker: rejects a stale read after a completed write")
func rejectsStaleRead() {
    let h = [
        Op(client: 0, key: 0, input: .write(1), output: .ok, call: 0, ret: 10),
        Op(client: 1, key: 0, input: .read, output: .value(0), call: 11, ret: 12),  // must see 1
    ]
    #expect(LinearizabilityChecker.check(h) == .notLinearizable(key: 0))
}

@Test("Simulation: linearizability checker: rejects two successful CAS from the same value")
func rejectsDoubleCas() {
    let h = [
        Op(client: 0, key: 3, input: .write(5), output: .ok, call: 0, ret: 1),
        Op(client: 1, key: 3, input: .cas(expected: 5, new: 6), output: .ok, call: 2, ret: 8),
        Op(client: 2, key: 3, input: .cas(expected: 5, new: 7), output: .ok, call: 3, ret: 9),
    ]
    #expect(LinearizabilityChecker.check(h) == .notLinearizable(key: 3))
}

@Test("Simulation: linearizability checker: unknown outcomes may or may not take effect")
func unknownOutcomes() {
    // A write with unknown outcome explains a later read of its value...
    let applied = [
        Op(client: 0, key: 0, input: .write(9), output: .unknown, call: 0, ret: 0),
        Op(client: 1, key: 0, input: .read, output: .value(9), call: 50, ret: 51),
    ]
    #expect(LinearizabilityChecker.check(applied) == .linearizable)
    // ...and equally a read that never sees it.
    let notApplied = [
        Op(client: 0, key: 0, input: .write(9), output: .unknown, call: 0, ret: 0),
        Op(client: 1, key: 0, input: .read, output: .value(0), call: 50, ret: 51),
    ]
    #expect(LinearizabilityChecker.check(notApplied) == .linearizable)
    // But it cannot take effect before it was invoked.
    let tooEarly = [
        Op(client: 1, key: 0, input: .read, output: .value(9), call: 1, ret: 2),
        Op(client: 0, key: 0, input: .write(9), output: .unknown, call: 5, ret: 0),
    ]
    #expect(LinearizabilityChecker.check(tooEarly) == .notLinearizable(key: 0))
    // Keys are independent.
    let mixed = [
        Op(client: 0, key: 1, input: .write(1), output: .ok, call: 0, ret: 1),
        Op(client: 1, key: 2, input: .read, output: .value(0), call: 2, ret: 3),
    ]
    #expect(LinearizabilityChecker.check(mixed) == .linearizable)
}

import Testing

@testable import RaftConsensus

private func ids(_ xs: [UInt64]) -> [MemberID] { xs.map { MemberID($0) } }

@Test("Consensus: quorum: majority commit index is the median-high acked index")
func majorityCommitted() {
    let cfg = MajorityConfig(ids([1, 2, 3]))
    let acks: [MemberID: LogIndex] = [1: 5, 2: 3, 3: 9]
    #expect(cfg.committedIndex { acks[$0] } == 5)
    let five = MajorityConfig(ids([1, 2, 3, 4, 5]))
    let acks5: [MemberID: LogIndex] = [1: 10, 2: 2, 3: 7, 4: 1]
    // Sorted desc: 10 7 2 1 0 → third is 2.
    #expect(five.committedIndex { acks5[$0] } == 2)
    #expect(MajorityConfig(ids([1, 2])).committedIndex { $0 == 1 ? 4 : nil } == .zero)
    #expect(MajorityConfig().committedIndex { _ in nil } == LogIndex(UInt64.max))
}

@Test("Consensus: quorum: majority vote results pending, won, lost")
func majorityVotes() {
    let cfg = MajorityConfig(ids([1, 2, 3]))
    #expect(cfg.voteResult { $0 == 1 ? true : nil } == .pending)
    #expect(cfg.voteResult { $0 == 3 ? nil : true } == .won)
    #expect(cfg.voteResult { $0 == 1 ? true : false } == .lost)
    #expect(cfg.voteResult { $0 == 1 ? true : ($0 == 2 ? false : nil) } == .pending)
    #expect(MajorityConfig(ids([1, 2, 3, 4])).voteResult { $0.rawValue <= 2 ? true : false } == .lost)
    #expect(MajorityConfig().voteResult { _ in nil } == .won)
}

@Test("Consensus: quorum: joint config needs both halves")
func jointQuorum() {
    let joint = JointConfig(incoming: MajorityConfig(ids([1, 2, 3])), outgoing: MajorityConfig(ids([3, 4, 5])))
    #expect(joint.isJoint)
    #expect(joint.allVoters == ids([1, 2, 3, 4, 5]))
    let acks: [MemberID: LogIndex] = [1: 10, 2: 10, 3: 4, 4: 6, 5: 1]
    // incoming: 10,10,4 → 10; outgoing: 6,4,1 → 4; joint = min.
    #expect(joint.committedIndex { acks[$0] } == 4)
    let votes: [MemberID: Bool] = [1: true, 2: true, 4: false, 5: false]
    #expect(joint.voteResult { votes[$0] } == .lost)
    let votes2: [MemberID: Bool] = [1: true, 2: true, 4: true]
    #expect(joint.voteResult { votes2[$0] } == .pending)
    let votes3: [MemberID: Bool] = [1: true, 2: true, 4: true, 5: true]
    #expect(joint.voteResult { votes3[$0] } == .won)
    let simple = JointConfig(incoming: MajorityConfig(ids([1])))
    #expect(!simple.isJoint)
    #expect(simple.committedIndex { _ in 7 } == 7)
}

@Test("Consensus: inflights: bounded by count and bytes, freed in order")
func inflightsLimits() {
    var inf = Inflights(capacity: 3, maxBytes: 100)
    inf.add(1, bytes: 10)
    inf.add(2, bytes: 10)
    #expect(!inf.isFull)
    inf.add(5, bytes: 10)
    #expect(inf.isFull)  // count
    inf.freeLE(2)
    #expect(inf.count == 1 && inf.bytes == 10 && !inf.isFull)
    inf.add(6, bytes: 95)
    #expect(inf.isFull)  // bytes
    inf.freeLE(4)
    #expect(inf.count == 2)
    inf.freeFirstOne()
    #expect(inf.count == 1 && inf.bytes == 95)
    // Wrap around the ring many times.
    inf.reset()
    for i in 1...50 {
        inf.add(LogIndex(UInt64(i)), bytes: 1)
        if inf.isFull { inf.freeLE(LogIndex(UInt64(i - 1))) }
    }
    #expect(inf.count <= 3)
    inf.freeLE(50)
    #expect(inf.count == 0 && inf.bytes == 0)
}

@Test("Consensus: progress: probe, replicate and snapshot transitions")
func progressStateMachine() {
    var pr = Progress(next: 11, inflights: Inflights(capacity: 2, maxBytes: 0), isLearner: false)
    #expect(pr.state == .probe && !pr.isPaused)
    pr.sentEntries(count: 1, lastIndex: 11, bytes: 1)
    #expect(pr.isPaused)  // one probe at a time
    // Stale rejection (not of our last probe) is ignored.
    let r1 = pr.maybeDecrTo(rejected: 5, hint: 3)
    #expect(!r1)
    let r2 = pr.maybeDecrTo(rejected: 10, hint: 6)
    #expect(r2)
    #expect(pr.next == 7 && !pr.isPaused)
    let r3 = pr.maybeUpdate(8)
    #expect(r3)
    pr.becomeReplicate()
    #expect(pr.next == 9)
    pr.sentEntries(count: 2, lastIndex: 10, bytes: 2)
    pr.sentEntries(count: 1, lastIndex: 11, bytes: 1)
    #expect(pr.next == 12 && pr.isPaused)
    let r4 = pr.maybeUpdate(10)
    #expect(r4)
    pr.inflights.freeLE(10)
    #expect(!pr.isPaused)
    // Rejection at or below match is stale in replicate; above match resets next.
    let r5 = pr.maybeDecrTo(rejected: 9, hint: 9)
    #expect(!r5)
    let r6 = pr.maybeDecrTo(rejected: 11, hint: 10)
    #expect(r6)
    #expect(pr.next == 11)
    pr.becomeSnapshot(50)
    #expect(pr.isPaused && pr.pendingSnapshot == 50)
    pr.becomeProbe()
    #expect(pr.state == .probe && pr.next == 51)
    let r7 = pr.maybeUpdate(5)
    #expect(!r7)  // stale ack
}

@Test("Consensus: unstable log: append, truncate, stable and snapshot")
func unstableLog() {
    func e(_ i: UInt64, _ t: UInt64) -> Entry { Entry(term: Term(t), index: LogIndex(i), payload: .normal([])) }
    var u = UnstableLog(offset: 5)
    #expect(u.lastIndexIfKnown == nil)
    u.truncateAndAppend([e(5, 1), e(6, 1), e(7, 1)][...])
    #expect(u.lastIndexIfKnown == 7 && u.term(at: 6) == Term(1))
    // Conflict in the middle truncates the suffix.
    u.truncateAndAppend([e(6, 2)][...])
    #expect(u.entries.map(\.index) == [5, 6] && u.term(at: 6) == Term(2))
    // Replacing before the offset moves the offset back.
    u.truncateAndAppend([e(4, 3)][...])
    #expect(u.offset == 4 && u.entries.count == 1)
    u.truncateAndAppend([e(5, 3), e(6, 3)][...])
    // Stable with a mismatching term is ignored; matching drops the prefix.
    u.stableTo(5, term: 1)
    #expect(u.offset == 4)
    u.stableTo(5, term: 3)
    #expect(u.offset == 6 && u.entries.map(\.index) == [6])
    let snap = Snapshot(metadata: SnapshotMetadata(index: 20, term: 4, confState: ConfState()), data: [1])
    u.restore(snap)
    #expect(u.firstIndexIfKnown == 21 && u.lastIndexIfKnown == 20 && u.term(at: 20) == Term(4))
    #expect(u.term(at: 19) == nil)
    u.stableSnapshotTo(20)
    #expect(u.snapshot == nil)
}

@Test("Consensus: log: fast back-off finds the last index with a term not above the hint")
func findConflictByTerm() {
    let storage = MemoryStableLog(confState: ConfState(voters: [1]))
    storage.append(
        [1, 1, 2, 2, 2, 5].enumerated().map {
            Entry(term: Term(UInt64($0.element)), index: LogIndex(UInt64($0.offset + 1)), payload: .normal([]))
        })
    let log = RaftLog(stable: storage, applied: .zero, maxApplyBytes: 1 << 20)
    #expect(log.findConflictByTerm(6, 4) == (LogIndex(5), Term(2)))
    #expect(log.findConflictByTerm(6, 1) == (LogIndex(2), Term(1)))
    #expect(log.findConflictByTerm(6, 5) == (LogIndex(6), Term(5)))
    #expect(log.findConflictByTerm(3, 0) == (LogIndex(0), Term(0)))
}

@Test("Consensus: memory storage: append truncates, compact keeps term of the cut point")
func memoryStorage() throws {
    let s = MemoryStableLog(confState: ConfState(voters: [1]))
    s.append((1...5).map { Entry(term: 1, index: LogIndex(UInt64($0)), payload: .normal([UInt8($0)])) })
    s.append([Entry(term: 2, index: 4, payload: .normal([]))])
    #expect(s.lastIndex == 4)
    #expect(try s.term(at: 4).get() == Term(2))
    s.createSnapshot(at: 3, confState: ConfState(voters: [1]), data: [9])
    s.compact(through: 3)
    #expect(s.firstIndex == 4)
    #expect(try s.term(at: 3).get() == Term(1))
    #expect(s.term(at: 2) == .failure(.compacted))
    #expect(s.entries(from: 3, to: 5, maxBytes: 100) == .failure(.compacted))
    #expect((try? s.entries(from: 4, to: 5, maxBytes: 0).get())?.count == 1)
}

@Test("Consensus: conf changer: single-step limits, joint enter and leave, learners next")
func confChanger() {
    var tracker = ProgressTracker(maxInflight: 4, maxInflightBytes: 0)
    let (cfg, prs) = ConfChanger.restore(ConfState(voters: [1, 2, 3]), tracker: tracker, lastIndex: 10)
    tracker.apply(config: cfg, progress: prs)
    var c = ConfChanger(tracker: tracker, lastIndex: 10)
    if case .success = c.simple([.addVoter(4), .addVoter(5)]) {
        Issue.record("two voters in one simple change must fail")
    }
    c = ConfChanger(tracker: tracker, lastIndex: 10)
    guard case .success(let (joint, jprs)) = c.enterJoint(autoLeave: false, [.addVoter(4), .addLearner(3)]) else {
        Issue.record("enter joint failed"); return
    }
    #expect(joint.confState.description == "voters=(1 2 4)&&(1 2 3) learners_next=(3)")
    tracker.apply(config: joint, progress: jprs)
    c = ConfChanger(tracker: tracker, lastIndex: 10)
    if case .success = c.enterJoint(autoLeave: false, [.addVoter(5)]) { Issue.record("nested joint must fail") }
    c = ConfChanger(tracker: tracker, lastIndex: 10)
    guard case .success(let (left, lprs)) = c.leaveJoint() else { Issue.record("leave failed"); return }
    #expect(left.confState.description == "voters=(1 2 4) learners=(3)")
    #expect(lprs.first { $0.0 == 3 }?.1.isLearner == true)
    tracker.apply(config: left, progress: lprs)
    c = ConfChanger(tracker: tracker, lastIndex: 10)
    if case .success = c.simple([.remove(1), .remove(2), .remove(4)]) { Issue.record("removing all voters must fail") }
}

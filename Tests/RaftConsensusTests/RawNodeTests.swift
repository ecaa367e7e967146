import Testing

@testable import RaftConsensus

/// Drives one RawNode's Ready cycle against its MemoryStableLog and returns the Ready.
@discardableResult
private func handle(_ node: RawNode, _ storage: MemoryStableLog) -> Ready {
    let rd = node.ready()
    if let s = rd.snapshot { storage.applySnapshot(s) }
    storage.append(rd.entries)
    if let hs = rd.hardState { storage.setHardState(hs) }
    for e in rd.committedEntries {
        if case .confChange(let cc) = e.payload { node.applyConfChange(cc) }
    }
    node.advance(rd)
    return rd
}

private func makeNode(
    _ id: MemberID, voters: [MemberID], learners: [MemberID] = [],
    configure: (inout RaftConfig) -> Void = { _ in }
) -> (RawNode, MemoryStableLog) {
    let storage = MemoryStableLog(confState: ConfState(voters: voters, learners: learners))
    var cfg = RaftConfig(id: id)
    configure(&cfg)
    return (RawNode(config: cfg, log: storage), storage)
}

@Test("Consensus: ready: a single voter commits only after its own write is durable")
func singleVoterCommitsAfterPersist() {
    let (node, storage) = makeNode(1, voters: [1])
    node.campaign()
    let rd = node.ready()
    #expect(rd.softState?.role == .leader)
    #expect(rd.hardState == HardState(term: 1, vote: 1, commit: 0))
    #expect(rd.entries.count == 1 && rd.mustSync)
    #expect(rd.committedEntries.isEmpty, "nothing may commit before the leader's own persist")
    storage.append(rd.entries)
    storage.setHardState(rd.hardState!)
    node.advance(rd)
    #expect(node.hasReady)
    let rd2 = handle(node, storage)
    #expect(rd2.committedEntries.map(\.index) == [1])
    #expect(node.status.commit == 1 && node.status.applied == 1)
    #expect(!node.hasReady)
}

@Test("Consensus: ready: leader traffic in a term not yet durable waits for the persist")
func leaderMessagesWaitForDurableTerm() {
    // Single voter plus a learner: the leader wins instantly, before term 1 is persisted.
    let (node, storage) = makeNode(1, voters: [1], learners: [2])
    node.campaign()
    let rd = handle(node, storage)
    #expect(rd.messages.isEmpty)
    #expect(rd.messagesAfterPersist.map(\.kind) == [.append])
    // Once term 1 is durable, appends may leave before the entries' own persist.
    node.step(Message(kind: .appendResponse, from: 2, to: 1, term: 1, index: 1))
    handle(node, storage)
    node.propose(Array("x".utf8))
    let rd2 = node.ready()
    #expect(rd2.messages.map(\.kind) == [.append] && rd2.messagesAfterPersist.isEmpty)
    node.advance(rd2)
}

@Test("Consensus: ready: votes and acknowledgements are never sent before the persist")
func votesAfterPersist() {
    let (node, storage) = makeNode(2, voters: [1, 2, 3])
    node.step(Message(kind: .vote, from: 1, to: 2, term: 5, logTerm: 0, index: 0))
    let rd = handle(node, storage)
    #expect(rd.hardState?.vote == 1 && rd.hardState?.term == 5)
    #expect(rd.messages.isEmpty)
    #expect(
        rd.messagesAfterPersist.count == 1 && rd.messagesAfterPersist[0].kind == .voteResponse
            && !rd.messagesAfterPersist[0].reject)
    // A second candidate in the same term is refused: one vote per term.
    node.step(Message(kind: .vote, from: 3, to: 2, term: 5, logTerm: 9, index: 9))
    let rd2 = handle(node, storage)
    #expect(rd2.messagesAfterPersist.first?.reject == true)
    node.step(
        Message(
            kind: .append, from: 1, to: 2, term: 5, logTerm: 0, index: 0,
            entries: [Entry(term: 5, index: 1, payload: .normal([1]))], commit: 0))
    let rd3 = handle(node, storage)
    #expect(rd3.messages.isEmpty && rd3.messagesAfterPersist.map(\.kind) == [.appendResponse])
    #expect(rd3.messagesAfterPersist[0].index == 1)
}

@Test("Consensus: proposals: dropped requests are values with a reason")
func droppedProposals() {
    let (follower, _) = makeNode(2, voters: [1, 2, 3])
    #expect(follower.propose([1]) == .dropped(.notLeader(knownLeader: .none)))
    follower.step(Message(kind: .heartbeat, from: 1, to: 2, term: 1, commit: 0))
    #expect(follower.propose([1]) == .dropped(.notLeader(knownLeader: 1)))
    #expect(follower.readIndex(context: [1]) == .forwarded(to: 1))

    let (leader, storage) = makeNode(1, voters: [1]) { $0.maxUncommittedEntriesSize = 10 }
    leader.campaign()
    handle(leader, storage)
    #expect(leader.propose([UInt8](repeating: 0, count: 8)) == .appended(index: 2, term: 1))
    #expect(leader.propose([UInt8](repeating: 0, count: 8)) == .dropped(.uncommittedLimitExceeded))
    #expect(leader.proposeConfChange(ConfChange([.remove(1)])) == .dropped(.invalidConfChange(.removesAllVoters)))
    #expect(leader.transferLeadership(to: 1) == .dropped(.ignored))
    #expect(leader.propose(batch: []) == .dropped(.ignored))
}

@Test("Consensus: config: lease reads without CheckQuorum are rejected by validation")
func configValidation() {
    var cfg = RaftConfig(id: 1)
    #expect(cfg.validate() == nil)
    cfg.readOnlyOption = .leaseBased
    cfg.checkQuorum = false
    #expect(cfg.validate() != nil)
    cfg.checkQuorum = true
    cfg.electionTick = 1
    #expect(cfg.validate() != nil)
    #expect(RaftConfig(id: .none).validate() != nil)
}

@Test("Consensus: election: randomized timeouts are deterministic per seed and within [n, 2n)")
func randomizedTimeouts() {
    func firstCampaignTick(seed: UInt64) -> Int {
        let (node, _) = makeNode(1, voters: [1, 2, 3]) {
            $0.seed = seed; $0.preVote = false
        }
        for t in 1...100 {
            node.tick()
            if node.status.role == .candidate { return t }
        }
        return -1
    }
    let ticks = (0..<UInt64(20)).map(firstCampaignTick)
    #expect(ticks.allSatisfy { (10..<20).contains($0) }, "\(ticks)")
    #expect(Set(ticks).count > 1, "jitter must vary with the seed")
    #expect(ticks == (0..<UInt64(20)).map(firstCampaignTick))
}

@Test("Consensus: describe: stable text for entries, messages and progress")
func describeFormats() {
    #expect(Entry(term: 2, index: 5, payload: .normal(Array("hi".utf8))).description == "5@2 \"hi\"")
    #expect(Entry(term: 2, index: 6, payload: .normal([0, 255])).description == "6@2 0x00ff")
    #expect(
        Entry(
            term: 3, index: 7, payload: .confChange(ConfChange([.addVoter(4), .remove(2)], transition: .jointExplicit))
        ).description
            == "7@3 conf(v4 r2 joint-explicit)")
    let m = Message(
        kind: .appendResponse, from: 2, to: 1, term: 4, logTerm: 1, index: 9, commit: 3, reject: true, rejectHint: 6)
    #expect(m.description == "2->1 appResp t4 reject idx=9 hint=6@1 commit=3")
    var pr = Progress(next: 4, inflights: Inflights(capacity: 2, maxBytes: 0), isLearner: true)
    pr.becomeReplicate()
    #expect(pr.description == "replicate match=0 next=1 learner")
}

@Test("Consensus: snapshot: stale snapshots are refused, matching ones fast-forward the commit")
func snapshotRejectPaths() {
    let (node, storage) = makeNode(2, voters: [1, 2, 3])
    let ents = (1...5).map { Entry(term: 1, index: LogIndex(UInt64($0)), payload: .normal([UInt8($0)])) }
    node.step(Message(kind: .append, from: 1, to: 2, term: 1, logTerm: 0, index: 0, entries: ents, commit: 3))
    handle(node, storage)
    #expect(node.status.commit == 3)
    func snap(_ i: UInt64, _ t: UInt64) -> Snapshot {
        Snapshot(
            metadata: SnapshotMetadata(index: LogIndex(i), term: Term(t), confState: ConfState(voters: [1, 2, 3])),
            data: [7])
    }
    // Stale: at or below our commit. Answered with our commit, nothing installed.
    node.step(Message(kind: .snapshot, from: 1, to: 2, term: 1, snapshot: snap(2, 1)))
    var rd = handle(node, storage)
    #expect(rd.snapshot == nil)
    #expect(rd.messagesAfterPersist.map(\.index) == [3])
    // Our log already has entry 5@1: just commit through it, no install.
    node.step(Message(kind: .snapshot, from: 1, to: 2, term: 1, snapshot: snap(5, 1)))
    rd = handle(node, storage)
    #expect(rd.snapshot == nil && node.status.commit == 5)
    // A snapshot past our log replaces it.
    node.step(Message(kind: .snapshot, from: 1, to: 2, term: 1, snapshot: snap(9, 1)))
    rd = handle(node, storage)
    #expect(rd.snapshot?.metadata.index == 9)
    #expect(rd.messagesAfterPersist.map(\.index) == [9])
    #expect(node.status.lastIndex == 9 && node.status.applied == 9 && storage.firstIndex == 10)
}

@Test("Consensus: quiesce: a vote request the lease drops still wakes a quiesced follower")
func leaseDroppedVoteWakesQuiescedFollower() {
    let (node, storage) = makeNode(2, voters: [1, 2, 3])
    node.step(Message(kind: .heartbeat, from: 1, to: 2, term: 1))
    handle(node, storage)
    node.step(Message(kind: .heartbeat, from: 1, to: 2, term: 1, quiesce: true))
    handle(node, storage)
    #expect(node.isQuiesced)
    // A pre-vote from a member that lost the quiesce heartbeat: in lease, so refused, but the
    // quiesced follower must start ticking again or it would ignore every candidate for ever.
    node.step(Message(kind: .preVote, from: 3, to: 2, term: 2, logTerm: 0, index: 0))
    #expect(!node.isQuiesced)
    let rd = handle(node, storage)
    #expect(rd.messagesAfterPersist.isEmpty && rd.messages.isEmpty, "still in lease: no answer yet")
    // Without a leader's heartbeat it campaigns after an election timeout, as any follower.
    for _ in 0..<(2 * RaftConfig(id: 2).electionTick) { node.tick() }
    let campaign = handle(node, storage)
    #expect(campaign.messagesAfterPersist.contains { $0.kind == .preVote })
}

@Test("Consensus: election: a commit point in a lower-term pre-vote reject is still learned")
func commitLearnedFromLowerTermReject() {
    let (node, storage) = makeNode(2, voters: [1, 2, 3])
    // Entries 1...2 at term 1 from leader 1, not yet known committed here.
    let entries = [Entry(term: 1, index: 1, payload: .normal([])), Entry(term: 1, index: 2, payload: .normal([1]))]
    node.step(Message(kind: .append, from: 1, to: 2, term: 1, logTerm: 0, index: 0, entries: entries, commit: 0))
    handle(node, storage)
    #expect(node.status.commit == 0)
    // We move to term 3 (say, a transfer campaign that failed), then a member still at term 1
    // rejects our pre-vote, reporting that index 2 (term 1) is committed.
    node.step(Message(kind: .heartbeat, from: 3, to: 2, term: 3))
    handle(node, storage)
    node.step(
        Message(kind: .preVoteResponse, from: 1, to: 2, term: 1, logTerm: 1, index: 2, commit: 2, reject: true))
    handle(node, storage)
    #expect(node.status.commit == 2)
}

@Test("Consensus: ready: after a conflict inside entries being persisted, the next Ready starts at the conflict")
func nextReadyStartsAtTheConflict() {
    let (node, storage) = makeNode(2, voters: [1, 2, 3, 4, 5])
    func entries(_ range: ClosedRange<UInt64>, term: Term) -> [Entry] {
        range.map { Entry(term: term, index: LogIndex($0), payload: .normal([UInt8($0)])) }
    }
    node.step(Message(kind: .append, from: 1, to: 2, term: 1, logTerm: 0, index: 0, entries: entries(1...5, term: 1)))
    handle(node, storage)
    // Leader 1 (term 2) sends 6...10 with commit 5; the Ready carrying them is being written.
    node.step(
        Message(
            kind: .append, from: 1, to: 2, term: 2, logTerm: 1, index: 5, entries: entries(6...10, term: 2), commit: 5))
    let first = node.ready()
    #expect(first.entries.map(\.index) == (6...10).map { LogIndex($0) })
    // Meanwhile leader 3 of term 3 (it has 6...7 from term 2) replaces 8 on.
    node.step(
        Message(
            kind: .append, from: 3, to: 2, term: 3, logTerm: 2, index: 7, entries: entries(8...9, term: 3), commit: 5))
    storage.append(first.entries)
    if let hs = first.hardState { storage.setHardState(hs) }
    node.advance(first)
    // 6 and 7 are durable and match leader 3: the next write must not start before 8, or a
    // crash inside it (truncation first) could cut durable, acknowledged entries.
    let second = node.ready()
    #expect(second.entries.map(\.index) == [8, 9])
    #expect(second.entries.allSatisfy { $0.term == 3 })
    storage.append(second.entries)
    if let hs = second.hardState { storage.setHardState(hs) }
    node.advance(second)
    #expect(node.status.lastIndex == 9)
    #expect(node.raft.log.unstable.entries.isEmpty, "the second write made 6...9 stable")
    while node.hasReady { handle(node, storage) }
}

/// The two ID sequences of a storage. Neither ever hands out an ID twice, across crashes
/// and restarts: removing a partition does not give its IDs back.
///
/// Partition IDs are leased in blocks of `partitionIDLeaseSize`: the store persists only
/// the exclusive end of the current lease, then hands out the block from memory. A crash
/// loses the unused rest of the block (a gap, harmless) and the next lease starts at the
/// persisted end, past every ID handed out before. Group IDs are allocated inside the
/// registration transaction that uses them, so they need no lease and leave no gaps.
extension MetadataStore {
    /// The next partition ID of this storage (the authority), starting at 2.
    public func allocatePartitionID() throws(MetadataError) -> PartitionID {
        try state.withLock { (state) throws(MetadataError) -> PartitionID in
            if state.nextPartitionID == state.leaseEnd {
                let databases = self.databases
                let next = state.nextPartitionID
                let leaseSize = Self.partitionIDLeaseSize
                let (start, end) = try write { (txn) throws(MetadataError) -> (UInt64, UInt64) in
                    let stored = try Self.readCounter(txn, databases, MetaKey.partitionIDLease, "partition_id_lease")
                    // Another opener of the same database may have leased meanwhile: start
                    // past whatever is persisted, never below it.
                    let start = max(stored, next)
                    let (end, overflow) = start.addingReportingOverflow(leaseSize)
                    guard !overflow else { throw .sequenceExhausted("partition ID") }
                    try Self.writeCounter(txn, databases, MetaKey.partitionIDLease, end)
                    return (start, end)
                }
                state.nextPartitionID = start
                state.leaseEnd = end
            }
            precondition(state.nextPartitionID < state.leaseEnd)
            defer { state.nextPartitionID += 1 }
            return PartitionID(unchecked: state.nextPartitionID)
        }
    }

    /// The persisted exclusive end of the partition ID leases: no ID at or past it has been
    /// handed out.
    public func partitionIDLeaseEnd() throws(MetadataError) -> PartitionID {
        let databases = self.databases
        let raw = try read { (txn) throws(MetadataError) in
            try Self.readCounter(txn, databases, MetaKey.partitionIDLease, "partition_id_lease")
        }
        return PartitionID(unchecked: raw)
    }

    /// Takes the next local group ID inside `txn` (the registration that uses it).
    func takeGroupID(_ txn: LMDBWriteTransaction) throws(MetadataError) -> GroupID {
        let next = try Self.readCounter(txn, databases, MetaKey.nextGroupID, "group_id_next")
        guard next < UInt64.max else { throw .sequenceExhausted("group ID") }
        try Self.writeCounter(txn, databases, MetaKey.nextGroupID, next + 1)
        return GroupID(next)
    }
}

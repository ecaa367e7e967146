import RaftConsensus

extension SharedLog {
    /// The durable entries of `group` in `lo ..< hi`, stopping once `maxBytes` of payload
    /// is reached (at least one entry is returned when the range is not empty). Recent
    /// entries come from memory; older ones are read from their segment and their checksum
    /// verified.
    public func entries(
        of group: GroupID, from lo: LogIndex, to hi: LogIndex, maxBytes: Int
    ) throws(WALError) -> [WALEntry] {
        guard lo < hi else { return [] }
        // Hold the segment table shared from the plan to the last read: a segment the plan
        // points into cannot be deleted (by compaction) before it is read.
        return try segments.access.withShared { () throws(WALError) in
            try plannedEntries(of: group, from: lo, to: hi, maxBytes: maxBytes)
        }
    }

    private func plannedEntries(
        of group: GroupID, from lo: LogIndex, to hi: LogIndex, maxBytes: Int
    ) throws(WALError) -> [WALEntry] {
        enum Slot {
            case cached(WALEntry)
            case disk(EntryLocation, LogIndex)
        }
        let plan: Result<[Slot], WALError> = lock.withLock {
            let log = table.groups[group] ?? GroupLog()
            if lo <= log.base {
                return .failure(.compacted(group: group, requested: lo, firstIndex: log.firstIndex))
            }
            if hi.previous > log.lastIndex {
                return .failure(.unavailable(group: group, requested: hi.previous, lastIndex: log.lastIndex))
            }
            var slots: [Slot] = []
            var bytes = 0
            var index = lo
            var hits: UInt64 = 0
            while index < hi {
                let location = log.location(of: index)!
                if let entry = cache.entry(group, index) {
                    slots.append(.cached(entry))
                    hits += 1
                } else {
                    slots.append(.disk(location, index))
                }
                bytes += Int(location.length)
                if bytes >= maxBytes { break }
                index = index.next
            }
            statisticsStorage.cacheHits += hits
            return .success(slots)
        }
        var result: [WALEntry] = []
        let slots = try plan.get()
        result.reserveCapacity(slots.count)
        var diskReads: UInt64 = 0
        for slot in slots {
            switch slot {
            case .cached(let entry):
                result.append(entry)
            case .disk(let location, let index):
                result.append(try readEntry(group: group, index: index, at: location))
                diskReads += 1
            }
        }
        if diskReads > 0 { lock.withLock { statisticsStorage.diskReads += diskReads } }
        return result
    }

    /// Reads one entry record from disk and checks that it is the entry the index says.
    /// The caller holds `segments.access` shared.
    private func readEntry(group: GroupID, index: LogIndex, at location: EntryLocation) throws(WALError) -> WALEntry {
        guard let file = segments.files[location.segment] else {
            throw .corrupt(
                file: segments.path(location.segment), offset: UInt64(location.offset), reason: "segment missing")
        }
        let size = WALFormat.recordSize(payload: Int(location.length))
        var bytes = [UInt8](repeating: 0, count: size)
        let read: Result<Int, IOError> = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(IOError) in try file.readFully(fromAbsoluteOffset: UInt64(location.offset), into: buffer)
            }
        }
        let n: Int
        do { n = try read.get() } catch { throw .io(error) }
        let header = bytes.withUnsafeBytes { RecordHeader.decode(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        guard let header, header.type == .entry, header.group == group, header.index == index else {
            throw .corrupt(
                file: file.path, offset: UInt64(location.offset),
                reason: "entry \(index) of group \(group) fails its checksum or is not the entry indexed there")
        }
        let payloadEnd = WALFormat.recordHeaderSize + header.length
        return WALEntry(
            term: header.term, index: index, kind: header.kind,
            payload: Array(bytes[WALFormat.recordHeaderSize..<payloadEnd]))
    }
}

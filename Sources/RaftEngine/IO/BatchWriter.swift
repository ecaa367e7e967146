import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One positioned write of a batch: `buffers` gathered (writev) at `offset`.
///
/// The buffers belong to the caller and must stay valid until the batch's `wait` returns.
public struct PositionedWrite {
    public var offset: UInt64
    public var buffers: [UnsafeRawBufferPointer]

    public init(offset: UInt64, buffers: [UnsafeRawBufferPointer]) {
        self.offset = offset
        self.buffers = buffers
    }

    public init(offset: UInt64, bytes: UnsafeRawBufferPointer) {
        self.init(offset: offset, buffers: [bytes])
    }

    var byteCount: Int { buffers.reduce(0) { $0 + $1.count } }
}

/// A submitted batch, redeemed with `BatchWriter.wait(for:)`.
public struct BatchTicket: Hashable, Sendable {
    let slot: Int
    let generation: UInt32
}

/// Writes batches of positioned writes linked to one fdatasync, through io_uring or the
/// pwritev fallback, with several batches in flight.
///
/// Not thread-safe: one writer thread owns it (the WAL has one writer per storage).
///
/// Failure rules:
/// - a short write is continued: the rest of the batch is submitted again from where the
///   kernel stopped, so the error that caused it (ENOSPC, EFBIG) is what the caller sees;
/// - a write error is thrown with the file and errno; the batch is not durable;
/// - an fdatasync error is thrown, and the writer refuses all later work (`.stopped`):
///   after a failed fdatasync the state of the page cache is unknown, so retrying could
///   report durable data that is not.
public final class BatchWriter {
    public let backend: IOBackendKind
    /// Linux's IOV_MAX: the most buffers one writev may gather.
    public static let maxBuffersPerWrite = 1024
    /// The most operations (writes plus the sync) one batch may hold.
    public let maxOperationsPerBatch: Int
    /// The most batches in flight at once.
    public let maxBatchesInFlight: Int

    private let writer: OpaquePointer
    private var slots: [Batch?]
    private var generation: UInt32 = 0
    private let completions: UnsafeMutablePointer<craft_completion>
    private let completionCapacity: Int
    /// Invariant: once set, never cleared; every later call throws it.
    private var stoppedBy: IOError?

    /// - Parameters:
    ///   - backend: io_uring or the fallback; defaults to the process-wide choice.
    ///   - depth: operations in flight across all batches (io_uring ring size).
    ///   - maxBatchesInFlight: batches submitted and not yet waited for.
    public init(
        backend: IOBackendKind = IOBackendChoice.current.kind,
        depth: Int = 256,
        maxBatchesInFlight: Int = 8
    ) throws(IOError) {
        precondition(depth >= 2 && depth <= 32768, "depth \(depth) out of range 2...32768")
        precondition(maxBatchesInFlight >= 1 && maxBatchesInFlight <= 1024)
        precondition(
            MemoryLayout<craft_write>.size == Int(craft_write_struct_size())
                && MemoryLayout<craft_completion>.size == Int(craft_completion_struct_size()),
            "Swift and C disagree on the layout of craft_write / craft_completion"
        )
        var created: OpaquePointer?
        let rc = craft_writer_create(backend.craftBackend, UInt32(depth), &created)
        if rc < 0 { try Syscall.failure("create \(backend) writer", path: nil, code: -rc) }
        self.writer = created!
        self.backend = backend
        let actualDepth = Int(craft_writer_depth(created!))
        self.maxOperationsPerBatch = min(actualDepth, Int(UInt16.max))
        self.maxBatchesInFlight = maxBatchesInFlight
        self.slots = Array(repeating: nil, count: maxBatchesInFlight)
        self.completionCapacity = actualDepth
        self.completions = .allocate(capacity: actualDepth)
    }

    deinit {
        // Completions still owed by the kernel reference our iovecs and the callers'
        // buffers: collect them before freeing anything.
        var drained = true
        while craft_writer_in_flight(writer) > 0 {
            let n = craft_writer_reap(writer, completions, UInt32(completionCapacity), 1)
            if n == -EINTR { continue }
            if n < 0 {
                drained = false
                break
            }
            for i in 0..<Int(n) { credit(completions[i]) }
        }
        craft_writer_destroy(writer)
        completions.deallocate()
        // If the kernel could not be drained, leaking the batches is the only safe choice.
        if drained { for case let batch? in slots { batch.release() } }
    }

    /// Writes `writes` in order, then makes them durable with one fdatasync; returns when
    /// they are durable.
    public func writeAndSync(_ file: DiskFile, _ writes: [PositionedWrite]) throws(IOError) {
        let ticket = try submit(file, writes, sync: true)
        try wait(for: ticket)
    }

    /// Submits a batch and returns at once. With `sync`, one fdatasync is linked after the
    /// last write. The caller must `wait(for:)` every ticket.
    public func submit(_ file: DiskFile, _ writes: [PositionedWrite], sync: Bool) throws(IOError) -> BatchTicket {
        if let stoppedBy { throw IOError(stoppedBy.operation, path: stoppedBy.path, kind: .stopped) }
        precondition(
            writes.count + (sync ? 1 : 0) <= maxOperationsPerBatch,
            "batch larger than \(maxOperationsPerBatch) operations")
        precondition(!writes.isEmpty || sync, "empty batch")
        for write in writes {
            precondition(
                !write.buffers.isEmpty && write.buffers.count <= BatchWriter.maxBuffersPerWrite,
                "a write needs 1...IOV_MAX buffers")
        }
        // A free slot: wait for the oldest batch when all are taken would reorder the
        // caller's waits, so a full table is the caller's bound being exceeded.
        guard let slot = slots.firstIndex(where: { $0 == nil }) else {
            preconditionFailure("more than \(maxBatchesInFlight) batches in flight")
        }
        generation &+= 1
        let batch = Batch(file: file, writes: Self.coalesce(writes), sync: sync, generation: generation)
        slots[slot] = batch
        do {
            try start(batch, slot: slot)
        } catch {
            slots[slot] = nil
            batch.release()
            throw error
        }
        return BatchTicket(slot: slot, generation: batch.generation)
    }

    /// Blocks until every operation of the batch has completed; throws the first failure.
    public func wait(for ticket: BatchTicket) throws(IOError) {
        guard let batch = slots[ticket.slot], batch.generation == ticket.generation else {
            preconditionFailure("wait for a batch that is not in flight")
        }
        defer {
            slots[ticket.slot] = nil
            batch.release()
        }
        while true {
            while batch.remaining > 0 { try reapAtLeastOne() }
            // Link semantics: the first write that failed or fell short ended the chain.
            if let (index, written) = batch.firstShortWrite() {
                if written < 0 {
                    try Syscall.failure("\(backend) write", path: batch.file.path, code: Int32(-written))
                }
                if written == 0 { throw IOError("\(backend) write", path: batch.file.path, kind: .writeIncomplete) }
                batch.continueAfterShortWrite(at: index, written: Int(written))
                try start(batch, slot: ticket.slot)
                continue
            }
            if batch.sync, let result = batch.syncResult, result < 0 {
                precondition(
                    result != -Int64(EBADF) && result != -Int64(EFAULT),
                    "fdatasync \(batch.file.path): \(IOError.errnoName(Int32(-result))) means a raftd bug (bad descriptor)"
                )
                let failure = IOError("fdatasync", path: batch.file.path, code: Int32(-result))
                stoppedBy = failure
                throw failure
            }
            return
        }
    }

    /// Operations submitted and not yet completed.
    public var operationsInFlight: Int { Int(craft_writer_in_flight(writer)) }

    // MARK: - Internals

    /// Merges writes that continue exactly where the previous one ends into one gathered
    /// write (up to `maxBuffersPerWrite` buffers): a WAL batch is contiguous, and one writev
    /// costs far less than a chain of linked ones.
    static func coalesce(_ writes: [PositionedWrite]) -> [PositionedWrite] {
        guard writes.count > 1 else { return writes }
        var merged: [PositionedWrite] = []
        merged.reserveCapacity(writes.count)
        var current = writes[0]
        var end = current.offset + UInt64(current.byteCount)
        for write in writes.dropFirst() {
            if write.offset == end && current.buffers.count + write.buffers.count <= maxBuffersPerWrite {
                current.buffers += write.buffers
            } else {
                merged.append(current)
                current = write
            }
            end = write.offset + UInt64(write.byteCount)
        }
        merged.append(current)
        return merged
    }

    private func start(_ batch: Batch, slot: Int) throws(IOError) {
        let operations = batch.prepare(slot: slot)
        let syncData: UInt64 =
            batch.sync
            ? Batch.userData(slot: slot, generation: batch.generation, operation: batch.writes.count) : UInt64.max
        while true {
            let rc = craft_writer_submit(
                writer, batch.file.descriptor, batch.craftWrites, UInt32(batch.writes.count), syncData)
            if rc >= 0 {
                batch.remaining = operations
                return
            }
            if rc == -EBUSY && operationsInFlight > 0 {
                // The ring is full of other batches' operations: collect some, then retry.
                try reapAtLeastOne()
                continue
            }
            if rc == -EINTR || rc == -EAGAIN { continue }
            // Anything else leaves the ring in an unknown state (part of the chain may be
            // queued): with the bounds above it cannot happen, so it is a bug.
            preconditionFailure("\(backend) submit to \(batch.file.path) failed: \(IOError.errnoName(-rc))")
        }
    }

    private func reapAtLeastOne() throws(IOError) {
        let n = try Syscall.call("\(backend) reap", path: nil) {
            craft_writer_reap(writer, completions, UInt32(completionCapacity), 1)
        }
        for i in 0..<Int(n) { credit(completions[i]) }
    }

    private func credit(_ completion: craft_completion) {
        let (slot, gen, operation) = Batch.decode(completion.user_data)
        guard slot < slots.count, let batch = slots[slot], batch.generation == gen else {
            preconditionFailure("completion for an unknown batch: \(completion.user_data)")
        }
        batch.record(operation: operation, result: completion.result)
    }
}

import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

extension BatchWriter {
    /// One batch in flight: the caller's writes, the C structs that describe them, and the
    /// result of every operation.
    ///
    /// Invariant: `iovecs` and `craftWrites` stay allocated and unchanged while any of this
    /// batch's operations is in the kernel (`remaining > 0`).
    final class Batch {
        let file: DiskFile
        private(set) var writes: [PositionedWrite]
        let sync: Bool
        let generation: UInt32
        /// One per write, then one for the sync; nil until completed.
        private var results: [Int64?] = []
        var remaining = 0
        private(set) var craftWrites: UnsafeMutablePointer<craft_write>
        private var iovecs: UnsafeMutablePointer<iovec>
        private let writeCapacity: Int
        private let iovecCapacity: Int

        init(file: DiskFile, writes: [PositionedWrite], sync: Bool, generation: UInt32) {
            self.file = file
            self.writes = writes
            self.sync = sync
            self.generation = generation
            // Continuing after a short write never adds writes or buffers, so the first
            // allocation is large enough for every resubmission.
            self.writeCapacity = max(writes.count, 1)
            self.iovecCapacity = max(writes.reduce(0) { $0 + $1.buffers.count }, 1)
            self.craftWrites = .allocate(capacity: writeCapacity)
            self.iovecs = .allocate(capacity: iovecCapacity)
        }

        func release() {
            precondition(remaining == 0, "batch released with operations in the kernel")
            craftWrites.deallocate()
            iovecs.deallocate()
        }

        static func userData(slot: Int, generation: UInt32, operation: Int) -> UInt64 {
            UInt64(generation) << 32 | UInt64(slot) << 16 | UInt64(operation)
        }

        static func decode(_ userData: UInt64) -> (slot: Int, generation: UInt32, operation: Int) {
            (Int((userData >> 16) & 0xFFFF), UInt32(userData >> 32), Int(userData & 0xFFFF))
        }

        /// Fills the C descriptions of the current writes; returns the operation count.
        func prepare(slot: Int) -> Int {
            var iovecIndex = 0
            for (i, write) in writes.enumerated() {
                let first = iovecIndex
                for buffer in write.buffers {
                    iovecs[iovecIndex] = iovec(
                        iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress),
                        iov_len: buffer.count
                    )
                    iovecIndex += 1
                }
                craftWrites[i] = craft_write(
                    offset: write.offset,
                    iov: UnsafePointer(iovecs + first),
                    iovcnt: UInt32(write.buffers.count),
                    reserved: 0,
                    user_data: Self.userData(slot: slot, generation: generation, operation: i)
                )
            }
            let operations = writes.count + (sync ? 1 : 0)
            results = Array(repeating: nil, count: operations)
            return operations
        }

        func record(operation: Int, result: Int64) {
            precondition(operation < results.count && results[operation] == nil, "duplicate completion")
            results[operation] = result
            remaining -= 1
        }

        /// The first write that did not write all its bytes, with its result (bytes or -errno).
        func firstShortWrite() -> (index: Int, result: Int64)? {
            for (i, write) in writes.enumerated() {
                let result = results[i]!
                if result != Int64(write.byteCount) { return (i, result) }
            }
            return nil
        }

        var syncResult: Int64? { sync ? results.last! : nil }

        /// Replaces the writes with what is left after `written` bytes of write `index`.
        func continueAfterShortWrite(at index: Int, written: Int) {
            var rest = writes[index]
            var skip = written
            rest.offset += UInt64(written)
            while skip > 0 {
                let first = rest.buffers[0]
                if first.count <= skip {
                    skip -= first.count
                    rest.buffers.removeFirst()
                } else {
                    rest.buffers[0] = UnsafeRawBufferPointer(rebasing: first[skip...])
                    skip = 0
                }
            }
            writes = [rest] + writes[(index + 1)...]
        }
    }
}

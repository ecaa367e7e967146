import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Reads files front to back in large chunks, several reads in flight through io_uring (or
/// pread on the fallback backend), so the disk is already reading the next chunks while the
/// caller compresses and sends this one: snapshot streams read partitions this way.
///
/// One reader per thread; it owns `depth` buffers of `chunkBytes` for its whole life.
public final class SequentialFileReader {
    public let chunkBytes: Int
    public let depth: Int
    public let backend: IOBackendKind
    private let ring: OpaquePointer
    private let buffers: [UnsafeMutableRawBufferPointer]
    private let completions: UnsafeMutablePointer<craft_completion>

    public init(
        backend: IOBackendKind = IOBackendChoice.current.kind, chunkBytes: Int = 1 << 20, depth: Int = 4
    ) throws(IOError) {
        precondition((4096...(64 << 20)).contains(chunkBytes) && (1...64).contains(depth))
        var created: OpaquePointer?
        let rc = craft_writer_create(backend.craftBackend, UInt32(depth), &created)
        if rc < 0 { try Syscall.failure("create \(backend) reader", path: nil, code: -rc) }
        ring = created!
        self.backend = backend
        self.chunkBytes = chunkBytes
        self.depth = depth
        buffers = (0..<depth).map { _ in .allocate(byteCount: chunkBytes, alignment: 4096) }
        completions = .allocate(capacity: depth)
    }

    deinit {
        // Reads still owed by the kernel write into our buffers: collect them first.
        var drained = true
        while craft_writer_in_flight(ring) > 0 {
            let n = craft_writer_reap(ring, completions, UInt32(depth), 1)
            if n == -EINTR { continue }
            if n < 0 {
                drained = false
                break
            }
        }
        craft_writer_destroy(ring)
        completions.deallocate()
        if drained { for buffer in buffers { buffer.deallocate() } }
    }

    /// Reads exactly `size` bytes of the file at `path` and hands them to `body` in order, in
    /// pieces of at most `chunkBytes`, until `body` returns false (then returns false). A
    /// file shorter than `size` is an error (it changed under the reader); bytes after
    /// `size` are not read.
    @discardableResult
    public func read(_ path: String, size: UInt64, _ body: (UnsafeRawBufferPointer) -> Bool) throws(IOError) -> Bool {
        let file = try DiskFile.open(path, .readOnly)
        defer { try? file.close() }
        let fd = file.descriptor
        let chunk = UInt64(chunkBytes)
        let count = size == 0 ? 0 : Int((size + chunk - 1) / chunk)
        // results[k % depth] holds chunk k's byte count once its read completed.
        var results = [Int64?](repeating: nil, count: depth)
        var submitted = 0
        var delivered = 0
        var failure: IOError?
        var stopped = false
        func length(of k: Int) -> UInt32 { UInt32(min(chunk, size - UInt64(k) * chunk)) }
        func submit() -> IOError? {
            while failure == nil && !stopped && submitted < count && submitted - delivered < depth {
                let k = submitted
                let rc = craft_writer_submit_read(
                    ring, fd, buffers[k % depth].baseAddress!, length(of: k), UInt64(k) * chunk, UInt64(k))
                if rc < 0 { return IOError("read (submit)", path: path, code: -rc) }
                submitted += 1
            }
            return nil
        }
        if let error = submit() { throw error }
        while delivered < count {
            if results[delivered % depth] == nil {
                let n = craft_writer_reap(ring, completions, UInt32(depth), 1)
                if n == -EINTR { continue }
                if n < 0 {
                    failure = (IOError("read (reap)", path: path, code: -n))
                    break
                }
                for i in 0..<Int(n) {
                    let k = Int(completions[i].user_data)
                    results[k % depth] = completions[i].result
                }
                continue
            }
            let k = delivered
            let result = results[k % depth]!
            results[k % depth] = nil
            var got = Int(max(result, 0))
            if result < 0 {
                failure = (IOError("read", path: path, code: Int32(-result)))
                break
            }
            // A short read (rare: a signal, a network file system): finish it in place.
            let want = Int(length(of: k))
            while got < want {
                let rest = craft_pread(
                    fd, buffers[k % depth].baseAddress! + got, want - got, UInt64(k) * chunk + UInt64(got))
                if rest == -Int64(EINTR) { continue }
                if rest < 0 {
                    failure = (IOError("read", path: path, code: Int32(-rest)))
                    break
                }
                if rest == 0 {
                    failure =
                        (IOError(
                            "read: the file ended at \(UInt64(k) * chunk + UInt64(got)) bytes, \(size) expected",
                            path: path, kind: .ioFailure))
                    break
                }
                got += Int(rest)
            }
            if failure != nil { break }
            if !body(UnsafeRawBufferPointer(rebasing: buffers[k % depth][0..<want])) {
                stopped = true
                break
            }
            delivered += 1
            if let error = submit() {
                failure = error
                break
            }
        }
        // Collect the reads still in flight before their buffers are reused.
        while craft_writer_in_flight(ring) > 0 {
            let n = craft_writer_reap(ring, completions, UInt32(depth), 1)
            if n == -EINTR { continue }
            if n < 0 { preconditionFailure("reaping io_uring reads failed (\(n)): buffers are still the kernel's") }
        }
        if let failure { throw failure }
        return !stopped
    }
}

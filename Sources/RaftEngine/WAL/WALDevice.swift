/// The seam between the WAL and the disk: batched writes linked to an fdatasync, and
/// segment preallocation. `BatchWriter` is the real one; tests wrap it to inject ENOSPC,
/// EIO and fdatasync failures at chosen points.
public protocol WALDevice: AnyObject {
    func submit(_ file: DiskFile, _ writes: [PositionedWrite], sync: Bool) throws(IOError) -> BatchTicket
    func wait(for ticket: BatchTicket) throws(IOError)
    func allocate(_ file: DiskFile, length: UInt64) throws(IOError)
}

extension BatchWriter: WALDevice {
    public func allocate(_ file: DiskFile, length: UInt64) throws(IOError) {
        try file.allocate(offset: 0, length: length)
    }
}

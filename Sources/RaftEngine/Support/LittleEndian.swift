/// Little-endian encoding into and decoding from raw buffers, for the on-disk formats.
///
/// The WAL is little-endian (the machines raftd runs on are; no byte swapping on the hot
/// path). The LMDB metadata uses big-endian keys so that they sort numerically.
enum LittleEndian {
    @inline(__always)
    static func store<T: FixedWidthInteger>(_ value: T, _ buffer: UnsafeMutableRawPointer, at offset: Int) {
        (buffer + offset).storeBytes(of: value.littleEndian, as: T.self)
    }

    @inline(__always)
    static func load<T: FixedWidthInteger>(_ type: T.Type, _ buffer: UnsafeRawPointer, at offset: Int) -> T {
        T(littleEndian: (buffer + offset).loadUnaligned(as: T.self))
    }
}

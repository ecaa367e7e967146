import CRaftIO

/// CRC-32C (Castagnoli), the checksum of every WAL record and snapshot chunk.
public enum CRC32C {
    /// The checksum of `bytes`, continuing from `previous` (the checksum of the bytes before).
    @inline(__always)
    public static func checksum(_ bytes: UnsafeRawBufferPointer, extending previous: UInt32 = 0) -> UInt32 {
        craft_crc32c_extend(previous, bytes.baseAddress, bytes.count)
    }

    public static func checksum(_ bytes: [UInt8], extending previous: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, extending: previous) }
    }

    /// The table implementation, whatever the CPU has (tests compare both).
    public static func softwareChecksum(_ bytes: UnsafeRawBufferPointer, extending previous: UInt32 = 0) -> UInt32 {
        craft_crc32c_extend_software(previous, bytes.baseAddress, bytes.count)
    }

    /// Whether `checksum` uses the CPU's crc32 instruction.
    public static var isHardwareAccelerated: Bool { craft_crc32c_is_hardware() != 0 }
}

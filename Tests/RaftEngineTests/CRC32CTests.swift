import Testing

@testable import RaftEngine

@Suite("CRC32C")
struct CRC32CTests {
    /// RFC 3720 (iSCSI) appendix B.4 test vectors, plus the common check value.
    static let vectors: [(name: String, bytes: [UInt8], crc: UInt32)] = [
        ("32 bytes of zeros", [UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ("32 bytes of ones", [UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ("32 incrementing bytes", (0..<32).map { UInt8($0) }, 0x46DD_794E),
        ("32 decrementing bytes", (0..<32).reversed().map { UInt8($0) }, 0x113F_DB5C),
        (
            "iSCSI read command PDU",
            [
                0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
                0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ],
            0xD996_3A56
        ),
        ("check value 123456789", Array("123456789".utf8), 0xE306_9283),
        ("empty", [], 0),
    ]

    @Test("CRC32C: RFC 3720 vectors, hardware path", arguments: 0..<vectors.count)
    func hardwareVectors(index: Int) {
        let vector = Self.vectors[index]
        #expect(CRC32C.checksum(vector.bytes) == vector.crc, "\(vector.name)")
    }

    @Test("CRC32C: RFC 3720 vectors, software path", arguments: 0..<vectors.count)
    func softwareVectors(index: Int) {
        let vector = Self.vectors[index]
        let crc = vector.bytes.withUnsafeBytes { CRC32C.softwareChecksum($0) }
        #expect(crc == vector.crc, "\(vector.name)")
    }

    @Test("CRC32C: extending piece by piece equals one pass, both paths agree on random data")
    func extendAndAgree() {
        var rng = SplitMix64(seed: 0xC3C3)
        for _ in 0..<200 {
            let data = rng.bytes(Int.random(in: 0...3000, using: &rng))
            let split = data.isEmpty ? 0 : Int.random(in: 0...data.count, using: &rng)
            let whole = CRC32C.checksum(data)
            let software = data.withUnsafeBytes { CRC32C.softwareChecksum($0) }
            let pieces = CRC32C.checksum(Array(data[split...]), extending: CRC32C.checksum(Array(data[..<split])))
            #expect(whole == software)
            #expect(whole == pieces)
        }
    }

    @Test("CRC32C: unaligned starts give the same result")
    func unaligned() {
        let data = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        data.withUnsafeBytes { raw in
            for start in 0..<9 {
                let slice = UnsafeRawBufferPointer(rebasing: raw[start...])
                #expect(CRC32C.checksum(slice) == CRC32C.softwareChecksum(slice))
                #expect(CRC32C.checksum(slice) == CRC32C.checksum(Array(data[start...])))
            }
        }
    }
}

/// Helpers for the stable text format shared by messages, entries, Ready and progress.
public enum Describe {
    /// Printable ASCII is shown quoted; anything else as hex, so output is always one line.
    public static func bytes(_ bytes: [UInt8]) -> String {
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != 0x22 }) {
            return "\"" + String(decoding: bytes, as: UTF8.self) + "\""
        }
        let digits: [Character] = Array("0123456789abcdef")
        var s = "0x"
        for b in bytes.prefix(16) {
            s.append(digits[Int(b >> 4)])
            s.append(digits[Int(b & 0xf)])
        }
        if bytes.count > 16 { s += "…(\(bytes.count)B)" }
        return s
    }
}

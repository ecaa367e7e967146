/// Whether `a` and `b` are equal, in time that depends only on their lengths (secrets,
/// tokens, MACs: an early exit would tell an attacker how many leading bytes matched).
public func constantTimeEqual(_ a: [UInt8], _ b: some Collection<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}

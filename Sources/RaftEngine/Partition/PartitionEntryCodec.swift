/// The binary encoding of a `PartitionTransaction` in a log entry, version 1. Big-endian
/// integers; strings and byte strings are a length and the bytes.
///
/// ```
/// u8 version=1 | u16 operation count | operations
/// operation: u8 tag | fields
///   1 createRepository  path, defaultBranch          2 removeRepository  path
///   3 updateReferences  path, u16 n, n x (name, old 20 B, new 20 B)
///   4 setHead           path, target                 5 attachPack        path, pack
///   6 createObjectPool  path                         7 linkToPool        repository, pool
///   8 unlinkFromPool    path                         9 setValue          key, value
///  10 deleteValue       key
/// path, name, key: u16 length | UTF-8       value: u32 length | bytes
/// pack: u8 kind | 1 attachment: hash 32 B, u64 pack bytes, u64 index bytes
///                 2 inline: u32 length | pack bytes, u32 length | index bytes
/// ```
///
/// Decoding validates every field (paths, ref names, bounds) and refuses trailing bytes:
/// damaged bytes are an error, never a partly applied transaction.
public enum PartitionEntryCodec {
    public static let version: UInt8 = 1

    public static func encode(_ transaction: PartitionTransaction) throws(PartitionError) -> [UInt8] {
        let t = PartitionTransaction.self
        guard transaction.operations.count <= t.maximumOperations else {
            throw .invalidOperation("\(transaction.operations.count) operations, at most \(t.maximumOperations)")
        }
        var w = ByteWriter(version: version)
        w.u16(UInt16(transaction.operations.count))
        for op in transaction.operations {
            switch op {
            case .createRepository(let path, let branch):
                w.u8(1)
                text(&w, path.utf8)
                text(&w, branch.utf8)
            case .removeRepository(let path):
                w.u8(2)
                text(&w, path.utf8)
            case .updateReferences(let path, let updates):
                guard updates.count <= t.maximumReferenceUpdates else {
                    throw .invalidOperation("\(updates.count) reference updates, at most \(t.maximumReferenceUpdates)")
                }
                w.u8(3)
                text(&w, path.utf8)
                w.u16(UInt16(updates.count))
                for u in updates {
                    text(&w, u.name.utf8)
                    w.append(u.old.bytes)
                    w.append(u.new.bytes)
                }
            case .setHead(let path, let target):
                w.u8(4)
                text(&w, path.utf8)
                text(&w, target.utf8)
            case .attachPack(let path, let pack):
                w.u8(5)
                text(&w, path.utf8)
                switch pack {
                case .attachment(let hash, let packBytes, let indexBytes):
                    guard (try? AttachmentID(hash: hash, sizes: [packBytes, indexBytes])) != nil else {
                        throw .invalidOperation(
                            "attachment of a \(hash.count)-byte hash and \(packBytes) + \(indexBytes) bytes")
                    }
                    w.u8(1)
                    w.append(hash)
                    w.u64(packBytes)
                    w.u64(indexBytes)
                case .inline(let pack, let index):
                    guard pack.count + index.count <= t.maximumInlinePackBytes else {
                        throw .invalidOperation(
                            "inline pack of \(pack.count + index.count) bytes, at most \(t.maximumInlinePackBytes)")
                    }
                    w.u8(2)
                    w.u32(UInt32(pack.count))
                    w.append(pack)
                    w.u32(UInt32(index.count))
                    w.append(index)
                }
            case .createObjectPool(let path):
                w.u8(6)
                text(&w, path.utf8)
            case .linkToPool(let repository, let pool):
                w.u8(7)
                text(&w, repository.utf8)
                text(&w, pool.utf8)
            case .unlinkFromPool(let path):
                w.u8(8)
                text(&w, path.utf8)
            case .setValue(let key, let value):
                try checkKey(key)
                guard value.count <= t.maximumValueBytes else {
                    throw .invalidOperation("value of \(value.count) bytes, at most \(t.maximumValueBytes)")
                }
                w.u8(9)
                text(&w, Array(key.utf8))
                w.u32(UInt32(value.count))
                w.append(value)
            case .deleteValue(let key):
                try checkKey(key)
                w.u8(10)
                text(&w, Array(key.utf8))
            case .adoptRepository(let path):
                w.u8(11)
                text(&w, path.utf8)
            }
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(PartitionError) -> PartitionTransaction {
        do {
            return try decodeFields(bytes)
        } catch {
            throw .corruptEntry(error.reason)
        }
    }

    private static func decodeFields(_ bytes: [UInt8]) throws(DecodeFailure) -> PartitionTransaction {
        let t = PartitionTransaction.self
        var r = ByteReader(bytes)
        try r.expectVersion(version)
        let count = Int(try r.u16())
        guard count <= t.maximumOperations else { throw DecodeFailure("\(count) operations") }
        var operations: [PartitionOperation] = []
        operations.reserveCapacity(count)
        for _ in 0..<count {
            let tag = try r.u8()
            switch tag {
            case 1: operations.append(.createRepository(try path(&r), defaultBranch: try ref(&r)))
            case 2: operations.append(.removeRepository(try path(&r)))
            case 3:
                let p = try path(&r)
                let n = Int(try r.u16())
                var updates: [ReferenceUpdate] = []
                updates.reserveCapacity(min(n, r.remaining / 42))
                for _ in 0..<n {
                    let name = try ref(&r)
                    updates.append(ReferenceUpdate(name: name, old: try oid(&r), new: try oid(&r)))
                }
                operations.append(.updateReferences(p, updates))
            case 4: operations.append(.setHead(try path(&r), target: try ref(&r)))
            case 5:
                let p = try path(&r)
                switch try r.u8() {
                case 1:
                    let hash = try r.take(32)
                    let packBytes = try r.u64()
                    let indexBytes = try r.u64()
                    guard (try? AttachmentID(hash: hash, sizes: [packBytes, indexBytes])) != nil else {
                        throw DecodeFailure("attachment of \(packBytes) + \(indexBytes) bytes is out of bounds")
                    }
                    operations.append(
                        .attachPack(p, .attachment(contentHash: hash, packBytes: packBytes, indexBytes: indexBytes)))
                case 2:
                    let pack = try r.take(Int(try r.u32()))
                    let index = try r.take(Int(try r.u32()))
                    guard pack.count + index.count <= t.maximumInlinePackBytes else {
                        throw DecodeFailure("inline pack of \(pack.count + index.count) bytes")
                    }
                    operations.append(.attachPack(p, .inline(pack: pack, index: index)))
                case let kind:
                    throw DecodeFailure("unknown pack kind \(kind)")
                }
            case 6: operations.append(.createObjectPool(try path(&r)))
            case 7: operations.append(.linkToPool(repository: try path(&r), pool: try path(&r)))
            case 8: operations.append(.unlinkFromPool(try path(&r)))
            case 9:
                let key = try key(&r)
                let length = Int(try r.u32())
                guard length <= t.maximumValueBytes else { throw DecodeFailure("value of \(length) bytes") }
                operations.append(.setValue(key: key, value: try r.take(length)))
            case 10: operations.append(.deleteValue(key: try key(&r)))
            case 11: operations.append(.adoptRepository(try path(&r)))
            default: throw DecodeFailure("unknown operation \(tag)")
            }
        }
        guard r.remaining == 0 else { throw DecodeFailure("\(r.remaining) bytes after the last operation") }
        return PartitionTransaction(operations)
    }

    /// The attachments an encoded transaction names, found without decoding the rest (a
    /// follower asks this of every entry it receives). Nil when it names one that cannot be
    /// an attachment (sizes beyond any the bulk path moves): such an entry must not be
    /// acknowledged. Other damage names nothing more: decoding at apply reports it.
    public static func attachments(in bytes: [UInt8]) -> [AttachmentID]? {
        guard bytes.first == version else { return [] }
        var found: [AttachmentID] = []
        do throws(DecodeFailure) {
            var r = ByteReader(bytes)
            try r.skip(1)
            let count = Int(try r.u16())
            for _ in 0..<count {
                switch try r.u8() {
                case 2, 6, 8, 11:
                    try r.skip(Int(try r.u16()))
                case 1, 4, 7:
                    try r.skip(Int(try r.u16()))
                    try r.skip(Int(try r.u16()))
                case 3:
                    try r.skip(Int(try r.u16()))
                    for _ in 0..<Int(try r.u16()) {
                        try r.skip(Int(try r.u16()))
                        try r.skip(2 * ObjectID.byteCount)
                    }
                case 5:
                    try r.skip(Int(try r.u16()))
                    switch try r.u8() {
                    case 1:
                        let hash = try r.take(32)
                        let packBytes = try r.u64()
                        let indexBytes = try r.u64()
                        guard let id = try? AttachmentID(hash: hash, sizes: [packBytes, indexBytes]) else { return nil }
                        found.append(id)
                    case 2:
                        try r.skip(Int(try r.u32()))
                        try r.skip(Int(try r.u32()))
                    default:
                        return found
                    }
                case 9:
                    try r.skip(Int(try r.u16()))
                    try r.skip(Int(try r.u32()))
                case 10:
                    try r.skip(Int(try r.u16()))
                default:
                    return found
                }
            }
        } catch {
            return found
        }
        return found
    }

    private static func text(_ w: inout ByteWriter, _ utf8: [UInt8]) {
        precondition(utf8.count <= Int(UInt16.max), "validated types are shorter")
        w.u16(UInt16(utf8.count))
        w.append(utf8)
    }

    private static func checkKey(_ key: String) throws(PartitionError) {
        let n = key.utf8.count
        guard n > 0 && n <= PartitionTransaction.maximumKeyBytes else {
            throw .invalidOperation("key of \(n) bytes, must be 1...\(PartitionTransaction.maximumKeyBytes)")
        }
    }

    private static func path(_ r: inout ByteReader) throws(DecodeFailure) -> RelativePath {
        let bytes = try r.take(Int(try r.u16()))
        return try DecodeFailure.validating { () throws(IdentityError) in try RelativePath(bytes: bytes) }
    }

    private static func ref(_ r: inout ByteReader) throws(DecodeFailure) -> RefName {
        let bytes = try r.take(Int(try r.u16()))
        do { return try RefName(bytes: bytes) } catch { throw DecodeFailure(error.description) }
    }

    private static func oid(_ r: inout ByteReader) throws(DecodeFailure) -> ObjectID {
        let bytes = try r.take(ObjectID.byteCount)
        do { return try ObjectID(bytes: bytes) } catch { throw DecodeFailure(error.description) }
    }

    private static func key(_ r: inout ByteReader) throws(DecodeFailure) -> String {
        let bytes = try r.take(Int(try r.u16()))
        guard !bytes.isEmpty, bytes.count <= PartitionTransaction.maximumKeyBytes,
            let key = String(validating: bytes, as: UTF8.self)
        else { throw DecodeFailure("key of \(bytes.count) bytes is not valid") }
        return key
    }
}

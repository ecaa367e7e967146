/// One change to a partition's state. A log entry carries a `PartitionTransaction` of
/// these, applied all together or not at all. Entries hold only verified changes (the
/// leader checked them against its state before proposing), so apply is unconditional.
public enum PartitionOperation: Hashable, Sendable {
    /// A new bare repository (files ref backend, SHA-1 objects) whose HEAD names
    /// `defaultBranch`.
    case createRepository(RelativePath, defaultBranch: RefName)
    case removeRepository(RelativePath)
    /// Reference updates of one repository, atomic together.
    case updateReferences(RelativePath, [ReferenceUpdate])
    /// Points the symbolic `HEAD` at `target`.
    case setHead(RelativePath, target: RefName)
    /// Adds a pack (with its index) to the repository's objects.
    case attachPack(RelativePath, PackReference)
    /// A new object pool: a bare repository other repositories of the partition borrow from.
    case createObjectPool(RelativePath)
    /// Makes `repository` borrow objects from `pool` (`objects/info/alternates`).
    case linkToPool(repository: RelativePath, pool: RelativePath)
    case unlinkFromPool(RelativePath)
    /// Partition metadata: a key and its value.
    case setValue(key: String, value: [UInt8])
    case deleteValue(key: String)
    /// A bare repository already on the storage, made before this node ran raftd, joins the
    /// partition as it is: apply registers it and changes no file.
    case adoptRepository(RelativePath)
}

/// One reference update, in git's own terms: `old` is what the ref held when the leader
/// verified the transaction (zero: it did not exist), `new` what it holds after (zero:
/// deleted).
public struct ReferenceUpdate: Hashable, Sendable {
    public var name: RefName
    public var old: ObjectID
    public var new: ObjectID

    public init(name: RefName, old: ObjectID, new: ObjectID) {
        self.name = name
        self.old = old
        self.new = new
    }

    public var isDeletion: Bool { new.isZero }
}

/// Where a pack's bytes are. Large packs are attachments: content-addressed files in the
/// replica's partition directory, durable on every replica before the entry naming them
/// is acknowledged. Small ones travel inside the entry.
public enum PackReference: Hashable, Sendable {
    /// The attachment with this SHA-256 (of the pack and then the index), and their sizes.
    case attachment(contentHash: [UInt8], packBytes: UInt64, indexBytes: UInt64)
    /// Pack and index bytes carried in the entry (at most `PartitionTransaction.maximumInlinePackBytes`).
    case inline(pack: [UInt8], index: [UInt8])
}

/// The operations of one log entry: one atomic transaction of one partition.
public struct PartitionTransaction: Hashable, Sendable {
    public var operations: [PartitionOperation]

    public init(_ operations: [PartitionOperation]) { self.operations = operations }

    /// Bounds, checked when encoding and when decoding.
    public static let maximumOperations = 1_024
    public static let maximumReferenceUpdates = 65_535
    public static let maximumKeyBytes = 1_024
    public static let maximumValueBytes = 64 << 10
    /// Packs (with their index) up to this size travel inside the entry; larger ones are
    /// attachments. A push of up to a few hundred commits of source stays one WAL record and
    /// needs no second transfer; the bound is a quarter of the host's default proposal limit
    /// (4 MiB), so an entry with a pack and thousands of reference updates still fits.
    public static let maximumInlinePackBytes = 1 << 20
}

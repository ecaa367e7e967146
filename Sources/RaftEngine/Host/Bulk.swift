import RaftConsensus

/// A content-addressed attachment: large immutable data an entry names instead of carrying
/// (a Git pack and its index). Its address is the SHA-256 of its parts concatenated in
/// order; the sizes travel with it, so a receiver knows what to expect before the first byte.
public struct AttachmentID: Hashable, Sendable, CustomStringConvertible {
    /// SHA-256 of the parts concatenated.
    public let hash: [UInt8]
    /// The size of each part, in order (a pack, then its index).
    public let sizes: [UInt64]

    /// The most parts an attachment has, and the largest one the bulk path moves: larger
    /// ones are damage or a hostile peer.
    public static let maximumParts = 4
    public static let maximumBytes: UInt64 = 64 << 30

    public init(hash: [UInt8], sizes: [UInt64]) throws(HostError) {
        guard hash.count == 32 else { throw .invalid("an attachment hash has 32 bytes, not \(hash.count)") }
        guard (1...Self.maximumParts).contains(sizes.count) else {
            throw .invalid("an attachment has 1 to \(Self.maximumParts) parts, not \(sizes.count)")
        }
        var total: UInt64 = 0
        for size in sizes {
            guard size <= Self.maximumBytes, total + size <= Self.maximumBytes else {
                throw .invalid("an attachment above \(Self.maximumBytes) bytes is refused")
            }
            total += size
        }
        self.hash = hash
        self.sizes = sizes
    }

    /// All parts together.
    public var totalBytes: UInt64 { sizes.reduce(0, +) }

    public var hex: String { SHA256.hex(hash) }

    public var description: String {
        "attachment \(hex.prefix(16)) (\(sizes.map(String.init).joined(separator: " + ")) bytes)"
    }
}

/// A request on the bulk path between two nodes: large data, moved outside consensus frames
/// so heartbeats and appends never queue behind it (the network transport gives it its own
/// connection).
public enum BulkRequest: Sendable, Equatable {
    /// `length` bytes at `offset` of `attachment` (its parts concatenated), from the
    /// receiver's replica of `partition`.
    case read(partition: PartitionKey, attachment: AttachmentID, offset: UInt64, length: Int)
    /// Make `attachment` durable on the receiver's replica of `partition`, reading it from
    /// the sender; answered once it is (or cannot be).
    case store(partition: PartitionKey, attachment: AttachmentID)
    /// Create the receiver's replica `spec` of a partition the sender minted (its key's
    /// authority is a storage of the sender): a new multi-member partition's other members.
    /// The host answers it itself (`stored` once the replica is registered), never the
    /// bulk service; a replica that exists already with the same member is `stored` too.
    case createReplica(ReplicaSpec)
    /// Hand the receiver's leadership of `partition` to `member`: the node that minted a
    /// partition (its authority's node) asks for it when another replica won the new
    /// partition's first election, since creations of a path run on the minting node. The
    /// host answers it itself (`stored` once the transfer started).
    case transferLeadership(partition: PartitionKey, to: MemberID)
    /// A piece of a snapshot stream for the receiver's replica of the partition (answered
    /// by its snapshot service, `stored` once written).
    case snapshotChunk(SnapshotChunk)
    /// The receiver's view of the membership of these partitions, and of the partitions
    /// holding these repositories (those it hosts): routing entries, configurations and
    /// leaders. The host answers it itself, with `PeerWire.encode([RouteView])` as data.
    case routes(keys: [PartitionKey], paths: [RelativePath])
    /// The current incarnation of the receiver's storage (8 bytes, big-endian, as data):
    /// a leader records it with a member it adds there. The host answers it itself.
    case storageIncarnation(StorageName)

    /// The partition the request is about (nil: a routing lookup by path only).
    public var partition: PartitionKey? {
        switch self {
        case .read(let partition, _, _, _), .store(let partition, _): partition
        case .createReplica(let spec): spec.partition
        case .transferLeadership(let partition, _): partition
        case .snapshotChunk(let chunk): chunk.partition
        case .routes(let keys, _): keys.first
        case .storageIncarnation: nil
        }
    }

    /// The largest `read` a node serves.
    public static let maximumReadBytes = 4 << 20
}

/// One piece of a snapshot stream (`SnapshotFormat`), in order within its transfer. The
/// first piece carries the snapshot message, which the receiver steps into its replica
/// once the whole stream arrived intact.
public struct SnapshotChunk: Sendable, Equatable {
    public var partition: PartitionKey
    /// Chosen by the sender; a new transfer of the same partition replaces an older one.
    public var transfer: UInt64
    /// 0, 1, 2, … within the transfer.
    public var sequence: UInt32
    /// The snapshot message (first piece only).
    public var message: Message?
    public var bytes: [UInt8]
    /// The stream ends with this piece.
    public var isLast: Bool

    /// The largest piece.
    public static let maximumBytes = 16 << 20

    public init(
        partition: PartitionKey, transfer: UInt64, sequence: UInt32, message: Message?, bytes: [UInt8], isLast: Bool
    ) {
        self.partition = partition
        self.transfer = transfer
        self.sequence = sequence
        self.message = message
        self.bytes = bytes
        self.isLast = isLast
    }
}

public enum BulkResponse: Sendable, Equatable {
    case data([UInt8])
    case stored
    /// The receiver will not or cannot: the reason, for the log.
    case refused(String)
}

/// Why a bulk request got no answer.
public enum BulkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer is not reachable (not connected, link down, stopped).
    case unreachable(NodeID)
    /// The transport's queue for the peer is full.
    case busy(NodeID)

    public var description: String {
        switch self {
        case .unreachable(let node): "node \(node) is not reachable on the bulk path"
        case .busy(let node): "the bulk path to node \(node) is full"
        }
    }
}

/// What an application plugs into a host to move attachments: it decides whether an
/// append's entries may enter a replica's log (all the attachments they name are durable
/// here), fetching what is missing, and it serves peers' bulk requests.
public protocol BulkService: AnyObject, Sendable {
    /// Whether `entries`, arriving for `replica` in an append from node `sender`, may be
    /// stepped. False when one of them names an attachment this replica does not hold
    /// durably: the host then drops the append (Raft's leader sends it again) and the
    /// service fetches the attachment from `sender` (nil: the host does not know the
    /// sender's node yet, and nothing can be fetched), handing the message back through
    /// `NodeHost.redeliver` once it holds it. Called on a shard's worker thread: quick, no
    /// waiting.
    func admit(_ message: PeerMessage, replica: ReplicaKey, sender: NodeID?) -> Bool

    /// Answers a peer's bulk request.
    func serve(_ request: BulkRequest, from node: NodeID) async -> BulkResponse

    /// The host stopped (its workers are joined): end transfers, take no new ones.
    func stop()
}

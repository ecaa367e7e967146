/// One storage opened for service: its metadata store, then its shared WAL, in that order.
///
/// The metadata store validates the layout and the identity (cluster, storage name, node)
/// and takes the storage's exclusive lock before the WAL is touched, so a storage of another
/// cluster, or one another process serves, is refused before any recovery writes to it
/// (a torn-tail cut is a write).
public final class Storage: Sendable {
    /// Why a storage could not be opened.
    public enum OpenError: Error, CustomStringConvertible {
        case metadata(MetadataError)
        case wal(WALError)

        public var description: String {
            switch self {
            case .metadata(let error): "storage metadata: \(error)"
            case .wal(let error): "storage WAL: \(error)"
            }
        }
    }

    public let layout: StorageLayout
    public let metadata: MetadataStore
    public let log: SharedLog

    /// Opens (with `createIfMissing`, first creates) the storage rooted at `root`.
    public init(
        root: String, clusterID: ClusterID, name: StorageName, nodeID: NodeID, createIfMissing: Bool,
        walOptions: SharedLog.Options = SharedLog.Options(),
        metadataOptions: LMDBEnvironment.Options = LMDBEnvironment.Options()
    ) throws(OpenError) {
        do {
            metadata = try MetadataStore.open(
                storageRoot: root, clusterID: clusterID, storageName: name, nodeID: nodeID,
                createIfMissing: createIfMissing, options: metadataOptions)
        } catch {
            throw .metadata(error)
        }
        layout = metadata.layout
        do {
            log = try SharedLog(directory: layout.walDirectory, options: walOptions)
        } catch {
            throw .wal(error)
        }
    }

    /// Stops the WAL writer once everything queued is durable, then closes the metadata
    /// store and releases the storage's lock (the storage may be opened again).
    public func close() {
        log.close()
        metadata.close()
    }
}

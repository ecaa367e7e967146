/// Which partition holds each repository of a storage: relative path → partition key. On
/// a node it is the storage's metadata store; apply keeps it current on every replica (a
/// created or adopted repository is registered, a removed one unregistered), so any node
/// can route a repository to its partition, and verification refuses operations on a
/// repository of another partition.
public protocol RepositoryRegistry: Sendable {
    /// Registers `path` in `partition` (again: nothing changes). Throws when another
    /// partition holds it.
    func register(_ path: RelativePath, in partition: PartitionKey) throws(PartitionError)
    /// Unregisters `path` if `partition` holds it.
    func unregister(_ path: RelativePath, from partition: PartitionKey) throws(PartitionError)
    func partition(of path: RelativePath) throws(PartitionError) -> PartitionKey?
    /// The repositories `partition` holds.
    func repositories(of partition: PartitionKey) throws(PartitionError) -> [RelativePath]
}

extension MetadataStore: RepositoryRegistry {
    public func register(_ path: RelativePath, in partition: PartitionKey) throws(PartitionError) {
        do { try mapPath(path, to: partition) } catch { throw .storage("registering \(path): \(error)") }
    }

    public func unregister(_ path: RelativePath, from partition: PartitionKey) throws(PartitionError) {
        do {
            guard try partitionKey(for: path) == partition else { return }
            try unmapPath(path)
        } catch {
            throw .storage("unregistering \(path): \(error)")
        }
    }

    public func partition(of path: RelativePath) throws(PartitionError) -> PartitionKey? {
        do { return try partitionKey(for: path) } catch { throw .storage("looking up \(path): \(error)") }
    }

    public func repositories(of partition: PartitionKey) throws(PartitionError) -> [RelativePath] {
        do { return try paths(of: partition) } catch { throw .storage("listing \(partition): \(error)") }
    }
}

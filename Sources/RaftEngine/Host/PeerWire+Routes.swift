import RaftConsensus

/// Routing lookups between nodes (`BulkRequest.routes`): the answer is a list of views.
///
/// ```
/// version u8 | count u16 | count x (
///     key length u8 | key | member u64 | route length u16 | route (RouteEntry encoding) |
///     member count u8 | members u64… | leader u64 | term u64 | commit u64 | last u64 |
///     config index u64 | stale u8 |
///     initial flag u8 [ | length u32 | StoredConfState ] |
///     match count u8 | match count x ( member u64 | index u64 ) )
/// ```
extension PeerWire {
    public static func encode(_ views: [RouteView]) -> [UInt8] {
        var writer = ByteWriter(version: version)
        writer.u16(UInt16(views.count))
        for view in views {
            let key = view.replica.partition.encoded
            writer.u8(UInt8(key.count))
            writer.append(key)
            writer.u64(view.replica.member.rawValue)
            let route = view.route.encoded
            writer.u16(UInt16(route.count))
            writer.append(route)
            let members = view.members.prefix(StoredConfState.maximumMembers * 2)
            writer.u8(UInt8(members.count))
            for member in members { writer.u64(member.rawValue) }
            writer.u64(view.leader.rawValue)
            writer.u64(view.term.rawValue)
            writer.u64(view.commit.rawValue)
            writer.u64(view.lastIndex.rawValue)
            writer.u64(view.configIndex.rawValue)
            writer.u8(view.stale ? 1 : 0)
            if let initial = view.initialConf.flatMap({ try? StoredConfState($0) }) {
                writer.u8(1)
                let bytes = initial.encoded
                writer.u32(UInt32(bytes.count))
                writer.append(bytes)
            } else {
                writer.u8(0)
            }
            let matches = view.matchIndex.sorted { $0.key < $1.key }.prefix(StoredConfState.maximumMembers * 2)
            writer.u8(UInt8(matches.count))
            for (member, index) in matches {
                writer.u64(member.rawValue)
                writer.u64(index.rawValue)
            }
        }
        return writer.bytes
    }

    public static func decodeRouteViews(_ bytes: [UInt8]) throws(PeerWireError) -> [RouteView] {
        var reader = ByteReader(bytes)
        do throws(DecodeFailure) {
            try reader.expectVersion(version)
            let count = Int(try reader.u16())
            guard count <= RouteView.maximumPerRequest else { throw DecodeFailure("\(count) routing views") }
            var views: [RouteView] = []
            for _ in 0..<count {
                let partition = try partitionKey(&reader)
                let member = MemberID(try reader.u64())
                let route = try RouteEntry(decoding: try reader.take(Int(try reader.u16())))
                var members: [MemberID] = []
                for _ in 0..<Int(try reader.u8()) { members.append(MemberID(try reader.u64())) }
                var view = RouteView(
                    route: route, members: members, leader: MemberID(try reader.u64()), term: Term(try reader.u64()),
                    commit: LogIndex(try reader.u64()), replica: ReplicaKey(partition: partition, member: member))
                view.lastIndex = LogIndex(try reader.u64())
                view.configIndex = LogIndex(try reader.u64())
                switch try reader.u8() {
                case 0: break
                case 1: view.stale = true
                case let flag: throw DecodeFailure("unknown stale flag \(flag)")
                }
                switch try reader.u8() {
                case 0: break
                case 1:
                    let length = Int(try reader.u32())
                    guard length <= 4096 else { throw DecodeFailure("an initial configuration of \(length) bytes") }
                    view.initialConf = ConfState(try StoredConfState(decoding: try reader.take(length)))
                case let flag: throw DecodeFailure("unknown initial configuration flag \(flag)")
                }
                for _ in 0..<Int(try reader.u8()) {
                    view.matchIndex[MemberID(try reader.u64())] = LogIndex(try reader.u64())
                }
                views.append(view)
            }
            try reader.expectEnd()
            return views
        } catch {
            throw PeerWireError("routing views: \(error.reason)")
        }
    }

    /// The body of a routing lookup (kind 6), after its first key (nil: none).
    static func routesRequest(first: PartitionKey?, _ reader: inout ByteReader) throws(DecodeFailure) -> BulkRequest {
        let count = Int(try reader.u16())
        guard count < RouteView.maximumPerRequest else { throw DecodeFailure("\(count) partitions in a lookup") }
        guard first != nil || count == 0 else { throw DecodeFailure("a lookup with keys after an empty first one") }
        var keys: [PartitionKey] = first.map { [$0] } ?? []
        for _ in 0..<count { keys.append(try partitionKey(&reader)) }
        let paths = Int(try reader.u16())
        guard paths <= 64 else { throw DecodeFailure("\(paths) paths in a lookup") }
        var found: [RelativePath] = []
        for _ in 0..<paths {
            let text = String(decoding: try reader.take(Int(try reader.u16())), as: UTF8.self)
            found.append(try DecodeFailure.validating { () throws(IdentityError) in try RelativePath(text) })
        }
        try reader.expectEnd()
        guard !keys.isEmpty || !found.isEmpty else { throw DecodeFailure("an empty routing lookup") }
        return .routes(keys: keys, paths: found)
    }

    static func partitionKey(_ reader: inout ByteReader) throws(DecodeFailure) -> PartitionKey {
        let raw = try reader.take(Int(try reader.u8()))
        return try DecodeFailure.validating { () throws(IdentityError) in try PartitionKey(decoding: raw) }
    }
}

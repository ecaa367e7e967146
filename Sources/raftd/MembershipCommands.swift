import ArgumentParser
import Foundation
import RaftAPI
import RaftClient
import RaftConsensus
import RaftEngine

/// Text for a membership answer: the steps, then the routing entry.
func describeMembership(_ response: Raftd_V1_MembershipResponse) -> String {
    (response.steps + [describeRoute(response.route)]).joined(separator: "\n")
}

func describeRoute(_ route: Raftd_V1_RouteResponse) -> String {
    var lines = [
        "partition \(route.partitionKey) route version (term \(route.term), index \(route.index)) leader member \(route.leaderMember == 0 ? "none" : "\(route.leaderMember)") at \(route.leaderAddress.isEmpty ? "unknown" : route.leaderAddress) (term \(route.leaderTerm), commit \(route.commitLsn))",
        "MEMBER\tROLE\tSTORAGE\tNODE\tMATCH\tLAG",
    ]
    for r in route.replicas {
        lines.append("\(r.memberID)\t\(r.role)\t\(r.storage)\t\(r.nodeID)\t\(r.matchLsn)\t\(r.lag)")
    }
    return lines.joined(separator: "\n")
}

/// A partition named by its key or by one of its repositories.
struct PartitionSelector: ParsableArguments {
    @Option(name: .long) var partitionKey: String?
    @Option(name: .long) var relativePath: String?

    func validate() throws {
        guard (partitionKey == nil) != (relativePath == nil) else {
            throw ValidationError("give exactly one of --partition-key and --relative-path")
        }
    }
}

/// Options of the commands that change one partition's membership.
struct MembershipOptions: ParsableArguments {
    @OptionGroup var client: ClientOptions
    @Option(name: .long, help: "The partition key (authority_id, as `raftd partition show` prints it).")
    var partitionKey: String
    @Option(name: .long, help: "How long the change (and any catch-up it waits for) may take, in seconds.")
    var timeout: UInt32 = 120

    var timeoutMilliseconds: UInt32 { timeout * 1000 }

    /// A client whose calls may last the whole timeout.
    func run(_ body: (RaftClient) async throws -> Void) async throws {
        try await runClient(client, deadline: .seconds(Int(timeout) + 15), body)
    }
}

extension PartitionCommand {
    struct Route: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A partition's routing entry (replicas, roles, storages, nodes, leader), from any node.")
        @OptionGroup var options: ClientOptions
        @OptionGroup var selector: PartitionSelector

        func run() async throws {
            try await runClient(options) { client in
                let route = try await client.route(key: selector.partitionKey, relativePath: selector.relativePath)
                try options.emit(route, describeRoute)
            }
        }
    }

    struct AddReplica: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-replica",
            abstract: "Add a read-only replica (learner); it catches up by snapshot and log. Promote it to vote.")
        @OptionGroup var options: MembershipOptions
        @Option(name: .long, help: "The storage to put it on (default: the placement policy chooses).")
        var storage = ""
        @Flag(name: .long, help: "Answer once the learner has caught up.") var wait = false

        func run() async throws {
            try await options.run { client in
                let response = try await client.addReplica(
                    partition: options.partitionKey, storage: storage, waitCaughtUp: wait,
                    timeoutMilliseconds: options.timeoutMilliseconds)
                try options.client.emit(response, describeMembership)
            }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a caught-up learner an electable voter (refused with its lag while it is behind).")
        @OptionGroup var options: MembershipOptions
        @Option(name: .long, help: "The learner's member ID.") var member: UInt64
        @Option(name: .long, help: "Refuse while it lags by more entries (0: 64).") var maxLag: UInt64 = 0

        func run() async throws {
            try await options.run { client in
                let response = try await client.promoteReplica(
                    partition: options.partitionKey, member: member, maxLag: maxLag,
                    timeoutMilliseconds: options.timeoutMilliseconds)
                try options.client.emit(response, describeMembership)
            }
        }
    }

    struct RemoveReplica: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-replica",
            abstract:
                "Remove a replica; its node deletes its data (at once, or when it comes back). The leader's own replica hands leadership over first."
        )
        @OptionGroup var options: MembershipOptions
        @Option(name: .long, help: "The member ID to remove.") var member: UInt64

        func run() async throws {
            try await options.run { client in
                let response = try await client.removeReplica(
                    partition: options.partitionKey, member: member, timeoutMilliseconds: options.timeoutMilliseconds)
                try options.client.emit(response, describeMembership)
            }
        }
    }

    struct ReplaceReplica: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "replace-replica",
            abstract:
                "Replace a replica (a failed node's, say): a learner on the new storage catches up, then one joint change makes it a voter and removes the old one."
        )
        @OptionGroup var options: MembershipOptions
        @Option(name: .long, help: "The member ID to replace.") var member: UInt64
        @Option(name: .long, help: "The new replica's storage (default: the placement policy chooses).")
        var storage = ""

        func run() async throws {
            try await options.run { client in
                let response = try await client.replaceReplica(
                    partition: options.partitionKey, member: member, storage: storage,
                    timeoutMilliseconds: options.timeoutMilliseconds)
                try options.client.emit(response, describeMembership)
            }
        }
    }

    struct TransferLeader: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "transfer-leader", abstract: "Hand a partition's leadership to a named voter and wait for it.")
        @OptionGroup var options: MembershipOptions
        @Option(name: .long, help: "The voter to lead.") var member: UInt64

        func run() async throws {
            try await options.run { client in
                let response = try await client.transferLeadership(
                    partition: options.partitionKey, to: member, timeoutMilliseconds: options.timeoutMilliseconds)
                try options.client.emit(response, describeMembership)
            }
        }
    }

    struct Rebalance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show which replicas a rebalance would move (--dry-run; the moves themselves come later).")
        @OptionGroup var options: ClientOptions
        @Flag(name: .long, help: "Only show the plan.") var dryRun = false

        func run() async throws {
            guard dryRun else {
                throw ValidationError("rebalance only plans for now: run it with --dry-run")
            }
            try await runClient(options) { client in
                let survey = try await ClusterSurvey.take(client)
                var policy = PlacementPolicy(storages: survey.loads)
                let moves = policy.rebalance(survey.partitions)
                var plan = Raftd_V1_MembershipResponse()
                plan.steps =
                    survey.notes + moves.map { "move \($0.partition) from \($0.from) to \($0.to): \($0.reason)" }
                if moves.isEmpty { plan.steps.append("balanced: no storage holds two replicas more than another") }
                try options.emit(plan) { $0.steps.joined(separator: "\n") }
            }
        }
    }
}

/// Every node's led partitions and storage loads, gathered for a placement plan.
struct ClusterSurvey {
    var loads: [PlacementPolicy.StorageLoad] = []
    var partitions: [PlacementPolicy.Partition] = []
    /// The endpoint leading each partition.
    var leaders: [PartitionKey: String] = [:]
    var notes: [String] = []

    static func take(_ client: RaftClient) async throws -> ClusterSurvey {
        var survey = ClusterSurvey()
        let info = try await client.clusterInfo()
        for node in info.nodes {
            let listed: Raftd_V1_ListPartitionsResponse
            do {
                listed = try await client.listPartitions(at: node.clientAddress)
            } catch {
                survey.notes.append(
                    "node \(node.name) at \(node.clientAddress) did not answer (\(error)): its partitions are left out")
                continue
            }
            for storage in listed.storages {
                guard let name = try? StorageName(storage.name), let id = try? NodeID(parsing: storage.nodeID) else {
                    continue
                }
                survey.loads.append(
                    .init(name: name, node: id, replicas: Int(storage.replicas), bytes: storage.bytes))
            }
            for summary in listed.partitions {
                guard let key = try? PartitionKey(parsing: summary.route.partitionKey) else { continue }
                let storages = summary.route.replicas.compactMap { try? StorageName($0.storage) }
                survey.partitions.append(.init(key: key, storages: storages, bytes: summary.bytes))
                survey.leaders[key] = node.clientAddress
            }
        }
        return survey
    }
}

extension ClusterCommand {
    struct SetReplicationFactor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-replication-factor",
            abstract:
                "Grow every partition to N replicas: a learner on the storage placement chooses, caught up, then promoted; paced, with progress."
        )
        @OptionGroup var options: ClientOptions
        @Argument(help: "Replicas per partition.") var factor: Int
        @Flag(name: .long, help: "Only show the plan and the reason for each choice.") var dryRun = false
        @Option(name: .long, help: "Partitions changed at once.") var parallel = 4
        @Option(name: .long, help: "Seconds each replica may take to catch up.") var timeout: UInt32 = 300

        func validate() throws {
            guard (1...7).contains(factor) else { throw ValidationError("the factor must be 1 to 7") }
            guard (1...64).contains(parallel) else { throw ValidationError("--parallel must be 1 to 64") }
        }

        func run() async throws {
            try await runClient(options, deadline: .seconds(Int(timeout) + 30)) { client in
                let survey = try await ClusterSurvey.take(client)
                var policy = PlacementPolicy(storages: survey.loads)
                let (decisions, skipped) = policy.plan(replicationFactor: factor, survey.partitions)
                var report = Raftd_V1_MembershipResponse()
                report.steps = survey.notes + decisions.map { "\($0.partition): add a replica on \($0.reason)" }
                let short = skipped.filter { !$0.1.hasPrefix("has ") }
                report.steps += short.map { "\($0.0): not grown: \($0.1)" }
                if dryRun || decisions.isEmpty {
                    report.steps.append(
                        "\(decisions.count) replicas to add over \(Set(decisions.map(\.partition)).count) partitions; \(skipped.count - short.count) already have \(factor)"
                    )
                    return try options.emit(report) { $0.steps.joined(separator: "\n") }
                }
                if options.format == .text { print(report.steps.joined(separator: "\n")) }
                let done = try await grow(client, decisions, survey)
                report.steps += done
                if options.format == .json { try options.emit(report) { $0.steps.joined(separator: "\n") } }
            }
        }

        /// Adds, catches up and promotes each planned replica, `parallel` partitions at a
        /// time (one partition's additions in order); prints progress as it goes.
        private func grow(
            _ client: RaftClient, _ decisions: [PlacementPolicy.Decision], _ survey: ClusterSurvey
        ) async throws -> [String] {
            var byPartition: [PartitionKey: [PlacementPolicy.Decision]] = [:]
            for decision in decisions { byPartition[decision.partition, default: []].append(decision) }
            let keys = byPartition.keys.sorted()
            let total = keys.count
            let started = ContinuousClock.now
            let text = options.format == .text
            let timeoutMilliseconds = timeout * 1000
            var lines: [String] = []
            var failures = 0
            var next = 0
            var finished = 0
            try await withThrowingTaskGroup(of: (PartitionKey, String?).self) { group in
                func start(_ key: PartitionKey) {
                    let steps = byPartition[key]!
                    group.addTask {
                        do {
                            for decision in steps {
                                let added = try await client.addReplica(
                                    partition: key.description, storage: decision.storage.description,
                                    waitCaughtUp: true, timeoutMilliseconds: timeoutMilliseconds)
                                _ = try await client.promoteReplica(
                                    partition: key.description, member: added.memberID,
                                    timeoutMilliseconds: timeoutMilliseconds)
                            }
                            return (key, nil)
                        } catch {
                            return (key, "\(error)")
                        }
                    }
                }
                while next < min(parallel, total) {
                    start(keys[next])
                    next += 1
                }
                for try await (key, failure) in group {
                    finished += 1
                    let elapsed = ContinuousClock.now - started
                    let seconds =
                        Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                    let line =
                        failure.map { "[\(finished)/\(total)] \(key): FAILED: \($0)" }
                        ?? "[\(finished)/\(total)] \(key): \(byPartition[key]!.count) replica(s) added and promoted (\(String(format: "%.1f", seconds)) s)"
                    if failure != nil { failures += 1 }
                    if text { print(line) }
                    lines.append(line)
                    if next < total {
                        start(keys[next])
                        next += 1
                    }
                }
            }
            guard failures == 0 else {
                FileHandle.standardError.write(
                    Data("raftd: \(failures) of \(total) partitions were not grown; run the command again\n".utf8))
                throw ExitCode(1)
            }
            return lines
        }
    }
}

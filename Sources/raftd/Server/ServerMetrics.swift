import Metrics
import Prometheus
import RaftEngine
import RaftTransport
import Synchronization

/// The node's Prometheus metrics: swift-metrics bootstrapped with swift-prometheus once per
/// process, the engine's counters published as deltas each time /metrics is scraped (and
/// every few seconds, so a counter moves without scrapes too), client requests counted as
/// they happen.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    private let last = Mutex<[String: UInt64]>([:])
    private let gitCounters = Mutex<GitCounters?>(nil)
    /// The Git HTTP service's counters, once it serves.
    var git: GitCounters? {
        get { gitCounters.withLock { $0 } }
        set { gitCounters.withLock { $0 = newValue } }
    }
    /// The leader count and when it was taken: one status per partition, so computed at
    /// most every 10 s whatever the scrape rate.
    private let leaders = Mutex<(value: Double, at: ContinuousClock.Instant?)>((0, nil))

    private static let bootstrapped = Mutex<PrometheusCollectorRegistry?>(nil)

    /// The process's registry, bootstrapping swift-metrics on first use.
    static func bootstrap() -> PrometheusCollectorRegistry {
        bootstrapped.withLock { registry in
            if let registry { return registry }
            let made = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: made)
            factory.defaultDurationHistogramBuckets = [
                .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .seconds(1),
            ]
            MetricsSystem.bootstrap(factory)
            registry = made
            return made
        }
    }

    init() { registry = Self.bootstrap() }

    private func counter(_ name: String, _ value: UInt64, _ dimensions: [(String, String)] = []) {
        let key = name + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        let delta: UInt64 = last.withLock { last in
            let previous = last[key] ?? 0
            last[key] = value
            return value >= previous ? value - previous : value
        }
        if delta > 0 { Counter(label: name, dimensions: dimensions).increment(by: Int64(delta)) }
    }

    private func gauge(_ name: String, _ value: Double, _ dimensions: [(String, String)] = []) {
        Gauge(label: name, dimensions: dimensions).record(value)
    }

    /// Publishes the engine's and transport's current counters.
    func update(server: RaftServer, requests: RequestCounters) async {
        let host = await server.host.counters()
        counter("raftd_entries_written_total", host.entriesWritten)
        counter("raftd_entries_applied_total", host.entriesApplied)
        counter("raftd_wal_writes_total", host.walWrites)
        counter("raftd_elections_total", host.campaigns)
        counter("raftd_leaderships_gained_total", host.leadershipsGained)
        counter("raftd_quiesces_total", host.quiesces)
        counter("raftd_messages_total", host.messagesSent, [("direction", "sent")])
        counter("raftd_messages_total", host.messagesReceived, [("direction", "received")])
        counter("raftd_entries_committed_total", host.entriesCommitted)
        for (result, count) in server.host.proposalResults.snapshot {
            counter("raftd_proposals_total", count, [("result", result)])
        }
        gauge("raftd_groups", Double(host.awake), [("state", "awake")])
        gauge("raftd_groups", Double(max(0, host.replicas - host.awake - host.dormant)), [("state", "quiesced")])
        gauge("raftd_groups", Double(host.dormant), [("state", "dormant")])
        gauge("raftd_replicas", Double(host.replicas))
        gauge("raftd_log_entries", Double(host.logEntries))
        gauge("raftd_log_entries_largest_partition", Double(host.largestLogEntries))
        counter("raftd_log_compactions_total", host.compactions)
        counter("raftd_log_entries_compacted_total", host.entriesCompacted)
        counter("raftd_snapshots_total", host.snapshotsInstalled, [("event", "installed")])
        counter("raftd_snapshots_total", host.snapshotsSent, [("event", "sent")])
        counter("raftd_snapshots_total", host.snapshotsFailed, [("event", "send_failed")])
        let snapshots = server.snapshots.counters
        counter("raftd_snapshot_bytes_total", snapshots.sentFileBytes, [("direction", "sent"), ("kind", "file")])
        counter("raftd_snapshot_bytes_total", snapshots.sentStreamBytes, [("direction", "sent"), ("kind", "stream")])
        counter(
            "raftd_snapshot_bytes_total", snapshots.receivedStreamBytes,
            [("direction", "received"), ("kind", "stream")])
        counter("raftd_snapshot_streams_refused_total", snapshots.refused)
        for (storage, statistics) in server.host.walStatistics {
            let dimensions = [("storage", storage.description)]
            counter("raftd_wal_batches_total", statistics.batches, dimensions)
            counter("raftd_wal_fdatasyncs_total", statistics.fdatasyncs, dimensions)
            counter("raftd_wal_bytes_written_total", statistics.bytesWritten, dimensions)
            counter("raftd_wal_bytes_reclaimed_total", statistics.bytesReclaimed, dimensions)
        }
        let peers = server.transport.statistics
        counter("raftd_peer_frames_total", peers.framesSent, [("direction", "sent")])
        counter("raftd_peer_frames_total", peers.framesReceived, [("direction", "received")])
        counter("raftd_peer_frames_dropped_total", peers.framesDropped)
        counter("raftd_peer_bytes_total", peers.bytesSent, [("direction", "sent")])
        counter("raftd_peer_bytes_total", peers.bytesReceived, [("direction", "received")])
        counter("raftd_peer_bulk_requests_total", peers.bulkRequestsSent, [("direction", "sent")])
        counter("raftd_peer_bulk_requests_total", peers.bulkRequestsServed, [("direction", "served")])
        for (cause, count) in peers.refusals { counter("raftd_peer_refusals_total", count, [("cause", cause)]) }
        gauge("raftd_peers_connected", Double(server.transport.connectedPeers.count))
        if let tls = server.configuration.peerTLS {
            // Alert on it: an expired certificate fails every new connection.
            gauge("raftd_tls_certificate_expiry_timestamp_seconds", Double(tls.notValidAfter))
        }
        for entry in requests.snapshot {
            counter("raftd_client_requests_total", entry.count, [("method", entry.method), ("status", entry.status)])
        }
        if let git {
            for entry in git.byServiceAndStatus {
                counter(
                    "raftd_git_requests_total", entry.count, [("service", entry.service), ("status", entry.status)])
            }
            counter("raftd_git_pushes_total", git.pushesAccepted.load(ordering: .relaxed), [("result", "committed")])
            counter("raftd_git_pushes_total", git.pushesRefused.load(ordering: .relaxed), [("result", "refused")])
            counter("raftd_git_pushed_pack_bytes_total", git.pushedBytes.load(ordering: .relaxed))
            counter("raftd_git_served_bytes_total", git.uploadBytes.load(ordering: .relaxed))
            counter("raftd_git_redirects_total", git.redirects.load(ordering: .relaxed))
            counter("raftd_git_refusals_total", git.unauthorized.load(ordering: .relaxed), [("cause", "unauthorized")])
            counter("raftd_git_refusals_total", git.busy.load(ordering: .relaxed), [("cause", "busy")])
        }
        let now = ContinuousClock.now
        let due = leaders.withLock { state in
            guard state.at.map({ now - $0 >= .seconds(10) }) ?? true else { return false }
            state.at = now
            return true
        }
        if due {
            let counts = await server.partitionCounts()
            leaders.withLock { $0.value = Double(counts.values.reduce(0) { $0 + $1.leaders }) }
        }
        gauge("raftd_leaders", leaders.withLock { $0.value })
    }

    func text() -> String { registry.emitToString() }
}

// swift-tools-version: 6.1
// raftd: a multi-Raft replication engine for storage nodes hosting thousands of Git
// repository partitions. See README.md and docs/.

import PackageDescription

let package = Package(
    name: "raftd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "raftd", targets: ["raftd"]),
        .executable(name: "raftd-git-hook", targets: ["raftd-git-hook"]),
        .library(name: "RaftEngine", targets: ["RaftEngine"]),
        .library(name: "RaftConsensus", targets: ["RaftConsensus"]),
        .library(name: "RaftSimulation", targets: ["RaftSimulation"]),
        .library(name: "RaftTesting", targets: ["RaftTesting"]),
        .library(name: "RaftTransport", targets: ["RaftTransport"]),
        .library(name: "RaftAPI", targets: ["RaftAPI"]),
        .library(name: "RaftClient", targets: ["RaftClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // TLS on the peer port (gRPC's transport already builds it) and certificates for
        // `raftd init --tls`.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        // Latency distributions in `raftd bench` and `raftd demo`.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Thin C: io_uring, file syscalls, zstd, crc32c, LMDB's C API. Debian packages
        // liburing-dev, libzstd-dev and liblmdb-dev provide the headers and libraries.
        .target(
            name: "CRaftIO",
            linkerSettings: [
                .linkedLibrary("uring"),
                .linkedLibrary("zstd"),
                .linkedLibrary("lmdb"),
                .linkedLibrary("z"),
                .linkedLibrary("pthread"),
            ]
        ),
        // Pure Raft for one group: standard library only (no Foundation, clock, I/O or
        // threads). Its own target so that the compiler enforces that.
        .target(
            name: "RaftConsensus"
        ),
        // The deterministic cluster simulator and linearizability checker: library code, so
        // that `raftd simulate` and the tests share it. Standard library only.
        .target(
            name: "RaftSimulation",
            dependencies: ["RaftConsensus"],
            path: "Sources/RaftSimulation"
        ),
        .target(
            name: "RaftEngine",
            dependencies: [
                "CRaftIO",
                "RaftConsensus",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The network transport between nodes: SwiftNIO TCP, the authenticated handshake,
        // batched frames and the bulk connection. The engine itself never imports NIO.
        .target(
            name: "RaftTransport",
            dependencies: [
                "RaftEngine",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The client API's contract (Proto/raftd.proto) and its generated code (committed;
        // scripts/generate-proto.sh regenerates it): what servers and clients share.
        .target(
            name: "RaftAPI",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Proto"]
        ),
        // etcd's v3 KV API (client code only), generated from the .proto files of Debian's
        // golang-etcd-server-dev by scripts/generate-etcd-proto.sh and committed: the load
        // generator drives etcd with it (`raftd bench --target etcd`).
        .target(
            name: "EtcdAPI",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The Swift client: the batch stream, routing cache, NotLeader following, retries.
        .target(
            name: "RaftClient",
            dependencies: [
                "RaftAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ]
        ),
        // The one in-process cluster harness (LocalCluster), the in-memory network, the
        // recording state machine and agreement checker, and the seeded host simulation:
        // shared by the tests, `raftd demo`, `raftd simulate --host` and HostBench. Nothing
        // test-only ships in RaftEngine's public API; the simulation reaches the host's
        // shards through `package` access.
        .target(
            name: "RaftTesting",
            dependencies: [
                "RaftEngine", "RaftConsensus", "RaftTransport", "RaftClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "raftd",
            dependencies: [
                "RaftEngine",
                "RaftTransport",
                "RaftAPI",
                "RaftClient",
                "EtcdAPI",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                "RaftSimulation",
                "RaftTesting",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "BenchSupport", dependencies: ["RaftEngine"], path: "Benchmarks/BenchSupport"),
        // git's proc-receive hook for pushes that raftd serves: a relay between git and the
        // daemon, in C so that it starts in a millisecond (it runs once per push).
        .executableTarget(
            name: "raftd-git-hook",
            path: "Sources/raftd-git-hook"
        ),
        .executableTarget(
            name: "WALIOBench",
            dependencies: ["RaftEngine", "CRaftIO", "BenchSupport"],
            path: "Benchmarks/WALIOBench"
        ),
        .executableTarget(
            name: "WALBench",
            dependencies: ["RaftEngine", "RaftConsensus", "BenchSupport"],
            path: "Benchmarks/WALBench"
        ),
        .executableTarget(
            name: "HostBench",
            dependencies: ["RaftEngine", "RaftConsensus", "CRaftIO", "BenchSupport", "RaftTesting"],
            path: "Benchmarks/HostBench"
        ),
        .executableTarget(
            name: "PartitionBench",
            dependencies: ["RaftEngine", "RaftConsensus", "BenchSupport", "RaftTesting"],
            path: "Benchmarks/PartitionBench"
        ),
        // Time and heap allocations per operation of the write path's building blocks; the
        // allocation counter replaces the malloc family in that program only.
        .target(name: "CAllocCounter", path: "Benchmarks/CAllocCounter"),
        // A large partition streamed as a snapshot to a replica that has none of it, with
        // small transactions on other partitions meanwhile.
        .executableTarget(
            name: "SnapshotBench",
            dependencies: ["RaftEngine", "RaftConsensus", "BenchSupport", "RaftTesting"],
            path: "Benchmarks/SnapshotBench"
        ),
        .executableTarget(
            name: "MicroBench",
            dependencies: ["RaftEngine", "RaftConsensus", "CAllocCounter"],
            path: "Benchmarks/MicroBench"
        ),
        .executableTarget(
            name: "ConsensusBench",
            dependencies: ["RaftConsensus"],
            path: "Benchmarks/ConsensusBench"
        ),
        .testTarget(
            name: "RaftConsensusTests",
            dependencies: ["RaftConsensus"],
            exclude: ["testdata"]
        ),
        .testTarget(
            name: "RaftSimulationTests",
            dependencies: ["RaftConsensus", "RaftSimulation", "RaftTesting"]
        ),
        .testTarget(
            name: "RaftTransportTests",
            dependencies: [
                "RaftTransport", "RaftEngine", "RaftConsensus", "RaftTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Three `raftd serve` processes on real sockets: run after `swift build` (they run
        // the built `raftd` binary).
        .testTarget(
            name: "RaftDaemonTests",
            dependencies: [
                "RaftTesting", "RaftClient", "RaftAPI", "RaftEngine", "RaftTransport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ]
        ),
        .testTarget(
            name: "RaftEngineTests",
            dependencies: ["RaftEngine", "CRaftIO", "RaftConsensus", "WALCrashSupport", "RaftTesting"]
        ),
        // The WAL crash test kills this child with SIGKILL at random points.
        .target(
            name: "WALCrashSupport",
            dependencies: ["RaftEngine", "RaftConsensus"],
            path: "Tests/WALCrashSupport"
        ),
        .executableTarget(
            name: "WALCrashChild",
            dependencies: ["RaftEngine", "RaftConsensus", "WALCrashSupport"],
            path: "Tests/WALCrashChild"
        ),
        .executableTarget(
            name: "PartitionCrashChild",
            dependencies: ["RaftEngine", "RaftConsensus"],
            path: "Tests/PartitionCrashChild"
        ),
    ]
)

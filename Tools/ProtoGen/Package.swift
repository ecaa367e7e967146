// swift-tools-version: 6.1
// Builds the two protoc plugins that generate Sources/RaftAPI/Generated from
// Sources/RaftAPI/Proto. Only scripts/generate-proto.sh uses this package; the generated
// code is committed, so neither a build nor CI needs it.

import PackageDescription

let package = Package(
    name: "ProtoGen",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
    ],
    targets: [
        .executableTarget(
            name: "ProtoGenVersion",
            dependencies: [],
            path: "Sources"
        )
    ]
)

#!/usr/bin/env bash
# Regenerates Sources/RaftAPI/Generated from Sources/RaftAPI/Proto/raftd.proto. The output
# is committed: builds and CI never run this. Needs protoc (Debian: protobuf-compiler);
# builds the two Swift plugins from the pinned packages in Tools/ProtoGen first.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y protobuf-compiler; else sudo apt-get install -y protobuf-compiler; fi
fi
(cd Tools/ProtoGen && swift build --product protoc-gen-swift && swift build --product protoc-gen-grpc-swift-2)
bin="$(cd Tools/ProtoGen && swift build --show-bin-path)"
out=Sources/RaftAPI/Generated
rm -f "$out"/*.swift
protoc --proto_path=Sources/RaftAPI/Proto \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --swift_opt=Visibility=Public \
    --swift_out="$out" \
    --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
    --grpc-swift_opt=Visibility=Public \
    --grpc-swift_out="$out" \
    Sources/RaftAPI/Proto/raftd.proto
echo "generated: $(ls "$out")"

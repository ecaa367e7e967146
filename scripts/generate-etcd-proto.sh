#!/usr/bin/env bash
# Regenerates Sources/EtcdAPI/Generated: Swift messages of etcd's v3 API (rpc.proto and the
# kv.proto / auth.proto it imports) and a client for the etcdserverpb.KV service only. The
# protos come from Debian's golang-etcd-server-dev (etcd 3.4). They are copied to a temporary
# directory with the gogoproto and google.api.http options stripped, so neither is a
# dependency; that changes no message or wire name. Services other than KV are dropped from
# the copy. The output is committed: builds and CI never run this. Needs protoc (Debian:
# protobuf-compiler); builds the two Swift plugins from the pinned packages in Tools/ProtoGen
# first, unless PROTOGEN_BIN names a directory holding already built plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y protobuf-compiler; else sudo apt-get install -y protobuf-compiler; fi
fi
src=/usr/share/gocode/src/go.etcd.io/etcd
if [ ! -f "$src/etcdserver/etcdserverpb/rpc.proto" ]; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y golang-etcd-server-dev; else sudo apt-get install -y golang-etcd-server-dev; fi
fi
if [ -n "${PROTOGEN_BIN:-}" ]; then
    bin="$PROTOGEN_BIN"
else
    (cd Tools/ProtoGen && swift build --product protoc-gen-swift && swift build --product protoc-gen-grpc-swift-2)
    bin="$(cd Tools/ProtoGen && swift build --show-bin-path)"
fi

# rpc.proto imports "etcd/mvcc/mvccpb/kv.proto" and "etcd/auth/authpb/auth.proto": lay the
# copies out under an etcd/ directory so those imports resolve against the temp root.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
protos=(etcdserver/etcdserverpb/rpc.proto mvcc/mvccpb/kv.proto auth/authpb/auth.proto)
for p in "${protos[@]}"; do
    mkdir -p "$tmp/etcd/$(dirname "$p")"
    # 1. the gogoproto and google.api imports; 2. file options `option (gogoproto.x) = v;`;
    # 3. field options `(gogoproto.x) = v` inside [...], then any [] left empty;
    # 4. `{ option (google.api.http) = { post: ... body: ... }; }` on an rpc becomes `{}`.
    perl -0pe '
        s/^[ \t]*import[ \t]+"(?:gogoproto\/gogo|google\/api\/annotations)\.proto";[ \t]*\n//mg;
        s/^[ \t]*option[ \t]+\(gogoproto\.\w+\)\s*=\s*[^;]*;[ \t]*\n//mg;
        s/\(gogoproto\.\w+\)\s*=\s*(?:"[^"]*"|[\w.]+)\s*,?\s*//g;
        s/,\s*\]/]/g;
        s/\s*\[\s*\]//g;
        s/\{\s*option\s*\(google\.api\.http\)\s*=\s*\{[^{}]*\}\s*;\s*\}/{}/g;
    ' "$src/$p" >"$tmp/etcd/$p"
done
# Keep only `service KV { ... }` (each service ends with a `}` in column 0).
perl -0pi -e 's/^service[ \t]+(?!KV\b)\w+\s*\{.*?^\}[ \t]*\n//gms' "$tmp/etcd/etcdserver/etcdserverpb/rpc.proto"
if grep -n 'gogoproto\.\|google\.api\|gogo\.proto\|annotations\.proto' "$tmp"/etcd/*/*/*.proto; then
    echo "generate-etcd-proto.sh: gogoproto/google.api references survived the stripping" >&2
    exit 1
fi
if [ "$(grep -c '^service' "$tmp/etcd/etcdserver/etcdserverpb/rpc.proto")" != 1 ]; then
    echo "generate-etcd-proto.sh: expected exactly one service (KV) in the trimmed rpc.proto" >&2
    exit 1
fi

out=Sources/EtcdAPI/Generated
mkdir -p "$out"
rm -f "$out"/*.swift
protoc --proto_path="$tmp" \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
    --swift_out="$out" \
    --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
    --grpc-swift_opt=Visibility=Public,Server=false,Client=true,FileNaming=PathToUnderscores \
    --grpc-swift_out="$out" \
    "${protos[@]/#/$tmp/etcd/}"
# kv.proto and auth.proto have no services: drop the header-only .grpc.swift files for them.
for f in "$out"/*.grpc.swift; do
    if grep -q 'This file contained no services' "$f"; then rm -f "$f"; fi
done
echo "generated: $(ls "$out")"

#!/usr/bin/env bash
# The API benchmark of docs/BENCHMARKS.md: three `raftd serve` processes (release build)
# on 127.0.0.1 from `raftd init`, and `raftd bench` from a separate process: 64 callers,
# 256 B writes, 1 and 1,000 partitions, through the batch stream and through unary calls.
# Usage: bash Benchmarks/api-bench.sh [DIR]   (DIR: where the cluster lives; default a
# temporary directory). Stops the nodes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product raftd >/dev/null
swift build -c release --product raftd-git-hook >/dev/null
B="$(swift build -c release --show-bin-path)/raftd"
D="${1:-$(mktemp -d /tmp/raftd-api-bench.XXXXXX)}"
"$B" init --nodes 3 --dir "$D" --base-port 18100 >/dev/null
pids=()
for i in 1 2 3; do
    "$B" serve --config "$D/node$i.toml" --log-level warning >"$D/node$i.log" 2>&1 &
    pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; wait' EXIT
sleep 3
E=127.0.0.1:18101,127.0.0.1:18111,127.0.0.1:18121
for p in 1 1000; do
    for m in batch unary; do
        "$B" bench --endpoints "$E" --token-file "$D/token" --partitions "$p" --clients 64 --value-size 256 \
            --duration 10 --warmup 3 --mode "$m" 2>>"$D/bench.err"
    done
done

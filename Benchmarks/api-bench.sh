#!/usr/bin/env bash
# Daemon API benchmark: 3 raftd processes (release build), raftd bench from a separate process.
set -euo pipefail
B=/work/main/.build/release/raftd
D=/tmp/benchc; rm -rf $D
$B init --nodes 3 --dir $D --base-port 18100 >/dev/null
for i in 1 2 3; do $B serve --config $D/node$i.toml --log-level warning > $D/node$i.log 2>&1 & done
sleep 3
E=127.0.0.1:18101,127.0.0.1:18111,127.0.0.1:18121
for p in 1 1000; do
  for m in batch unary; do
    $B bench --endpoints $E --token-file $D/token --partitions $p --clients 64 --value-size 256 --duration 10 --warmup 3 --mode $m 2>>$D/bench.err
  done
done
pkill -TERM -f "serve --config $D" || true
sleep 2

#!/usr/bin/env bash
# The main command (README): installs what is missing, builds raftd in release mode and
# runs `raftd demo`: three `raftd serve` processes on 127.0.0.1 that replicate real work
# (partitions, writes, a git push and clone, kill -9 of a leader, its restart, checks),
# then 200 seeds of the consensus simulator. Idempotent. The benchmarks are separate
# commands (README, docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-system-packages.sh

echo "==> swift build -c release"
swift build -c release --product raftd
swift build -c release --product raftd-git-hook
bin="$(swift build -c release --show-bin-path)"

echo
echo "==> raftd demo: 3 raftd processes, 1,000 partitions: writes, git push and clone, quiescing, kill -9, restart, checks"
"$bin/raftd" demo
echo
echo "==> consensus core: 200 seeds of the fault-injecting simulator (3-member groups)"
"$bin/raftd" simulate --seeds 200 --seed 1

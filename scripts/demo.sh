#!/usr/bin/env bash
# The main command (README): installs what is missing, builds in release mode and runs a
# local 3-node cluster that replicates real work, then the benchmarks in their quick form.
# Idempotent.
#
# The cluster runs in one process today (three node hosts on an in-memory transport, each
# with its own storage: real WAL and metadata store on disk); the daemon issue moves it to
# three processes on real sockets.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-system-packages.sh

echo "==> swift build -c release"
swift build -c release --product raftd
swift build -c release --product raftd-git-hook
swift build -c release --product HostBench
swift build -c release --product WALIOBench
swift build -c release --product WALBench
bin="$(swift build -c release --show-bin-path)"

echo
echo "==> raftd demo: 3 nodes, 1,000 groups: writes, quiescing, failover, restart, checks"
"$bin/raftd" demo --groups 1000 --seconds 5
echo
echo "==> consensus core: 200 seeds of the fault-injecting simulator (3-member groups)"
"$bin/raftd" simulate --seeds 200 --seed 1
echo
echo "==> raftd io-probe"
"$bin/raftd" io-probe --directory .
echo
mkdir -p bench-data
echo "==> node host benchmark (quick run; full run: $bin/HostBench, and --scenario restart --groups 100000)"
"$bin/HostBench" --quick --dir bench-data/host
echo
echo "==> WAL I/O benchmark (quick run; full run: $bin/WALIOBench)"
"$bin/WALIOBench" --quick --dir bench-data
echo
echo "==> shared WAL: 1000 groups, group commit vs one fdatasync per entry, then replay speed"
echo "    (quick run; full run: $bin/WALBench)"
"$bin/WALBench" --quick --dir bench-data

#!/usr/bin/env bash
# The main command (README): installs what is missing, builds in release mode and runs what
# raftd can do today. Idempotent.
#
# Today that is the consensus core under the simulator and the storage layer: the io_uring
# probe and a real durable write, the WAL I/O micro benchmark, and the shared WAL's group
# commit and recovery benchmark. The local 3-node cluster replaces this once the consensus core, the WAL,
# the node host and the daemon exist (issues 3-6); this script will then start it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-system-packages.sh

echo "==> swift build -c release"
swift build -c release --product raftd
swift build -c release --product WALIOBench
swift build -c release --product WALBench
bin="$(swift build -c release --show-bin-path)"

echo
echo "raftd has no cluster yet: this demo runs what exists, the consensus core and the storage layer."
echo
echo "==> consensus core: 200 seeds of the fault-injecting simulator (3-member groups)"
"$bin/raftd" simulate --seeds 200 --seed 1
echo
echo "==> raftd io-probe"
"$bin/raftd" io-probe --directory .
echo
echo "==> WAL I/O benchmark (quick run; full run: $bin/WALIOBench)"
mkdir -p bench-data
"$bin/WALIOBench" --quick --dir bench-data
echo
echo "==> shared WAL: 1000 groups, group commit vs one fdatasync per entry, then replay speed"
echo "    (quick run; full run: $bin/WALBench)"
"$bin/WALBench" --quick --dir bench-data

#!/usr/bin/env bash
# raftd side by side with etcd on this machine (docs/BENCHMARKS.md, "raftd and etcd").
#
# Installs Debian's etcd-server if it is missing, builds raftd in release mode, measures the
# machine's floors (fdatasync of a 4 KiB append, loopback round trip), then starts 3 etcd
# members on loopback and runs the four workloads against them with `raftd bench --target
# etcd`, stops them, starts 3 raftd nodes (configs from `raftd init`, durable defaults) and
# runs the same workloads with `raftd bench`. Both store on the same disk (DIR). Prints one
# table with both systems, the ratios and the targets, and cleans up.
#
#   workload  clients  value   partitions (etcd: distinct keys)
#   (a)       1        256 B   1
#   (b)       64       256 B   1
#   (c)       64       256 B   1,000
#   (d)       16       16 KiB  1
#
# Usage: bash Benchmarks/compare-etcd.sh [DIR]   (default: a temporary directory)
# Environment: DURATION (s, default 8), WARMUP (s, default 2), SYSTEMS ("etcd raftd", or
# one of them), WORKLOADS ("a b c d", or some of them).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
SYSTEMS="${SYSTEMS:-etcd raftd}"
WORKLOADS="${WORKLOADS:-a b c d}"

bash scripts/ensure-system-packages.sh >/dev/null
if [[ " $SYSTEMS " == *" etcd "* ]] && ! command -v etcd >/dev/null; then
    echo "==> installing etcd-server (Debian)"
    if [ "$(id -u)" = 0 ]; then apt-get install -y etcd-server >/dev/null; else sudo apt-get install -y etcd-server >/dev/null; fi
fi
echo "==> swift build -c release (raftd, raftd-git-hook)"
swift build -c release --product raftd >/dev/null
swift build -c release --product raftd-git-hook >/dev/null
B="$(swift build -c release --show-bin-path)/raftd"

D="${1:-$(mktemp -d /tmp/raftd-vs-etcd.XXXXXX)}"
mkdir -p "$D"
R="$D/results.jsonl"
: >"$R"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "==> machine floors in $D"
"$B" io-probe --floors --directory "$D" --format json | sed 's/^{/{"kind":"floors",/' >>"$R"
tail -1 "$R"

workloads=("a 1 256 1" "b 64 256 1" "c 64 256 1000" "d 16 16384 1")

# Sum of a metric over the given HTTP endpoints (Prometheus text).
scrape() {
    local name="$1"
    shift
    local total=0
    for e in "$@"; do
        v=$(curl -s "http://$e/metrics" | awk -v n="$name" '$1 ~ "^"n"({|$)" {s+=$2} END {printf "%.0f", s}')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

run_workloads() {
    local system="$1" metric="$2" cpu_ports="$3" endpoints="$4" metrics_endpoints="$5" kind="${6:-}"
    shift 5
    for w in "${workloads[@]}"; do
        set -- $w
        local name="$1" clients="$2" size="$3" parts="$4"
        [[ " $WORKLOADS " == *" $name "* ]] || continue
        echo "==> $system${kind:+ $kind} ($name): $clients clients, $size B, $parts partitions"
        local before after
        # shellcheck disable=SC2086
        before=$(scrape "$metric" $metrics_endpoints)
        out=$("$B" bench --target "$system" --endpoints "$endpoints" ${TOKEN_ARGS:-} --partitions "$parts" \
            --clients "$clients" --value-size "$size" --duration "$DURATION" --warmup "$WARMUP" \
            --cpu-ports "$cpu_ports" --label "$system${kind:+-$kind}-$name" ${kind:+--workload $kind} --format json \
            2>>"$D/bench.err")
        # shellcheck disable=SC2086
        after=$(scrape "$metric" $metrics_endpoints)
        echo "$out" | sed "s/^{/{\"kind\":\"run\",\"shape\":\"$name\",\"fdatasyncs\":$((after - before)),/" >>"$R"
        echo "$out"
    done
}

# ---------------------------------------------------------------- etcd
if [[ " $SYSTEMS " == *" etcd "* ]]; then
echo "==> 3 etcd members on loopback ($(etcd --version | head -1))"
cluster=""
for i in 1 2 3; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((17000 + 10 * i + 1))"; done
for i in 1 2 3; do
    c=$((17000 + 10 * i)) p=$((17000 + 10 * i + 1))
    etcd --name "m$i" --data-dir "$D/etcd/m$i" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token raftd-bench \
        --log-level error >"$D/etcd-m$i.log" 2>&1 &
    pids+=($!)
done
E=127.0.0.1:17010,127.0.0.1:17020,127.0.0.1:17030
leader=""
for _ in $(seq 1 100); do
    leader=$(ETCDCTL_API=3 etcdctl --endpoints "$E" endpoint status -w json 2>/dev/null |
        python3 -c 'import json,sys
try:
    s=json.load(sys.stdin)
    print(next(e["Endpoint"].replace("http://","") for e in s if e["Status"]["leader"]==e["Status"]["header"]["member_id"]))
except Exception: pass' || true)
    [ -n "$leader" ] && break
    sleep 0.2
done
[ -n "$leader" ] || { echo "etcd elected no leader; see $D/etcd-m*.log" >&2; exit 1; }
echo "    leader $leader (the load goes to the leader: etcd's best case, no forwarding)"
TOKEN_ARGS="" run_workloads etcd etcd_disk_wal_fsync_duration_seconds_count 17010,17020,17030 "$leader" \
    "127.0.0.1:17010 127.0.0.1:17020 127.0.0.1:17030"
cleanup
pids=()
rm -rf "$D/etcd" # the members' data; logs and results stay
fi

# ---------------------------------------------------------------- raftd
if [[ " $SYSTEMS " == *" raftd "* ]]; then
echo "==> 3 raftd nodes on loopback (raftd init defaults: fsync on, one storage each)"
"$B" init --nodes 3 --dir "$D/raftd" --base-port 18100 >/dev/null
for i in 1 2 3; do
    "$B" serve --config "$D/raftd/node$i.toml" --log-level warning >"$D/raftd-node$i.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 1 100); do
    ok=0
    for i in 1 2 3; do curl -sf "http://127.0.0.1:$((18100 + 10 * (i - 1) + 2))/readyz" >/dev/null && ok=$((ok + 1)); done
    [ "$ok" = 3 ] && break
    sleep 0.2
done
# Reference transactions (the product's writes: git's files on every replica), then values
# only (the replication engine's counterpart of an etcd put).
for kind in refs values; do
    TOKEN_ARGS="--token-file $D/raftd/token" run_workloads raftd raftd_wal_fdatasyncs_total 18101,18111,18121 \
        127.0.0.1:18101,127.0.0.1:18111,127.0.0.1:18121 "127.0.0.1:18102 127.0.0.1:18112 127.0.0.1:18122" "$kind"
done
cleanup
pids=()
rm -rf "$D/raftd/data" # the storages; configs, logs and results stay
fi

# ---------------------------------------------------------------- the table
python3 - "$R" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
floors = next(r for r in rows if r["kind"] == "floors")
def system(r):
    return "etcd" if r["target"] == "etcd" else f"raftd {r['workload']}"
runs = {(system(r), r["shape"]): r for r in rows if r["kind"] == "run"}
fsync, rtt = floors["fdatasync_4k_append_p50_us"], floors["loopback_rtt_p50_us"]
def per_write(r):
    return r["fdatasyncs"] / max(1, r["writes_all"])
print()
print(f"floors: fdatasync of a 4 KiB append p50 {fsync} µs, loopback round trip p50 {rtt} µs")
print()
print("| workload | system | writes/s | MB/s | p50 ms | p99 ms | p99.9 ms | CPU µs/write: servers + generator | fdatasyncs/write (3 nodes) | errors | x etcd |")
print("|" + "---|" * 11)
for w in "abcd":
    base = runs.get(("etcd", w))
    for t in ("etcd", "raftd refs", "raftd values"):
        r = runs.get((t, w))
        if not r:
            continue
        cpu = f"{r.get('target_cpu_us_per_write', 0):.0f} + {r.get('generator_cpu_us_per_write', 0):.0f}"
        errs = sum(r["errors"].values())
        key = "mb_per_second" if w == "d" else "writes_per_second"
        ratio = f"{float(r[key]) / float(base[key]):.2f}" if base and t != "etcd" and float(base[key]) > 0 else ""
        print(f"| ({w}) {r['clients']}c {r['value_size']}B {r['partitions']}p | {t} | {r['writes_per_second']} | {r['mb_per_second']} | {r['p50_ms']} | {r['p99_ms']} | {r['p999_ms']} | {cpu} | {per_write(r):.3f} | {errs} | {ratio} |")
print()
print("targets (raftd's reference transactions, the load the issue defines; values only marked):")
def ratio(t, w, key):
    e, r = runs.get(("etcd", w)), runs.get((t, w))
    return None if not e or not r or float(e[key]) == 0 else float(r[key]) / float(e[key])
def verdict(ok): return "met" if ok else "missed"
for t in ("raftd refs", "raftd values"):
    tag = "" if t == "raftd refs" else "  [values only]"
    a = runs.get((t, "a"))
    if a:
        print(f"  (a) p50 {a['p50_ms'] * 1000:.0f} µs against 2 x ({fsync} + {rtt}) = {2 * (fsync + rtt)} µs: {verdict(a['p50_ms'] * 1000 <= 2 * (fsync + rtt))}{tag}")
    b = ratio(t, "b", "writes_per_second")
    if b is not None:
        p99r, p99e = runs[(t, "b")]["p99_ms"], runs[("etcd", "b")]["p99_ms"]
        print(f"  (b) {b:.2f}x etcd's writes/s (target 4x), p99 {p99r} ms against etcd's {p99e} ms: {verdict(b >= 4 and p99r <= p99e)}{tag}")
    c = ratio(t, "c", "writes_per_second")
    if c is not None:
        per = per_write(runs[(t, "c")])
        print(f"  (c) {c:.2f}x etcd's writes/s (target 6x), {per:.3f} fdatasyncs per write on 3 nodes (target <= 0.05): {verdict(c >= 6 and per <= 0.05)}{tag}")
    d = ratio(t, "d", "mb_per_second")
    if d is not None:
        print(f"  (d) {d:.2f}x etcd's MB/s (target 4x): {verdict(d >= 4)}{tag}")
print(f"\nresults: {sys.argv[1]}")
EOF

#!/usr/bin/env bash
# Git over HTTP, measured: pushes of one small commit (sequential, and concurrent pushers
# on 1 repository and on 100), a 200 MiB push, and clones from the leader and a follower.
# Baselines in the same run, on the same disk: `git push` to a local bare repository
# (file://) and to `git http-backend` (as CGI, behind Benchmarks/git-http-backend.py).
#
#   bash Benchmarks/git-bench.sh [--pushes N] [--seconds S] [--pushers P] [--large-mib M]
#
# Builds raftd (release) first. Opt-in: not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

PUSHES=40
SECONDS_EACH=10
PUSHERS=8
LARGE_MIB=200
while (($#)); do
    case "$1" in
    --pushes) PUSHES=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --pushers) PUSHERS=$2; shift 2 ;;
    --large-mib) LARGE_MIB=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

bash scripts/ensure-system-packages.sh
echo "==> building raftd (release)"
swift build -c release --product raftd >/dev/null
swift build -c release --product raftd-git-hook >/dev/null
BIN=$(swift build -c release --show-bin-path)/raftd

WORK=$(mktemp -d /tmp/raftd-git-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@raftd GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@raftd
now_ns() { date +%s%N; }

# ---- the cluster
PORT=$((24000 + RANDOM % 2000))
"$BIN" init --nodes 3 --dir "$WORK/cluster" --base-port $PORT >/dev/null
for i in 1 2 3; do
    "$BIN" serve --config "$WORK/cluster/node$i.toml" --log-level warning >"$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
done
TOKEN=$(tr -d '\n' <"$WORK/cluster/token")
EP="127.0.0.1:$((PORT + 1))"
for _ in $(seq 1 200); do
    "$BIN" cluster info --endpoints "$EP" --token-file "$WORK/cluster/token" >/dev/null 2>&1 && break
    sleep 0.1
done
AUTH=(-c "http.extraHeader=Authorization: Bearer $TOKEN")
git_url() { echo "http://127.0.0.1:$((PORT + 10 * ($1 - 1) + 3))/$2"; }
leader_node() { # the node (1-3) leading the partition of $1
    local addr
    addr=$("$BIN" partition show --endpoints "$EP" --token-file "$WORK/cluster/token" --relative-path "$1" --format json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_address"])')
    echo $((( ${addr##*:} - PORT - 1) / 10 + 1))
}
echo "==> creating 101 repositories"
"$BIN" repo create bench/one.git --endpoints "$EP" --token-file "$WORK/cluster/token" >/dev/null
for i in $(seq 0 99); do
    "$BIN" repo create "bench/many-$i.git" --endpoints "$EP" --token-file "$WORK/cluster/token" >/dev/null
done
"$BIN" repo create bench/large.git --endpoints "$EP" --token-file "$WORK/cluster/token" >/dev/null

# ---- git http-backend (CGI, behind Benchmarks/git-http-backend.py), and bare
# repositories for file://
mkdir -p "$WORK/backend"
for r in one $(seq -f 'many-%g' 0 99); do
    git init -q --bare "$WORK/backend/$r.git"
    git -C "$WORK/backend/$r.git" config receive.unpackLimit 1
done
BACKEND_PORT=$((PORT + 90))
python3 Benchmarks/git-http-backend.py $BACKEND_PORT "$WORK/backend" &
PIDS+=($!)
# The local bare repositories keep a push as one pack, as raftd's receive-pack does
# (receive.unpackLimit=1): the same work per push, and clones that reuse the pack.
for r in local-one local-large $(seq -f 'local-many-%g' 0 99); do
    git init -q --bare "$WORK/$r.git"
    git -C "$WORK/$r.git" config receive.unpackLimit 1
done
sleep 1

# ---- one working repository per pusher, with a first commit pushed everywhere
seed() { # $1 dir
    git init -q -b main "$1"
    echo seed >"$1/seed"
    git -C "$1" add seed
    git -C "$1" commit -q -m seed
}

# Sequential pushes of one small commit each; prints "p50_ms p99_ms pushes_per_s".
sequential() { # $1 url, $2 label
    local dir="$WORK/seq-$2" times=() i t0 t1
    seed "$dir"
    git "${AUTH[@]}" -C "$dir" push -q "$1" main:refs/heads/seq-$2
    for i in $(seq 1 "$PUSHES"); do
        echo "$i" >"$dir/f"
        git -C "$dir" add f
        git -C "$dir" commit -q -m "$i"
        t0=$(now_ns)
        git "${AUTH[@]}" -C "$dir" push -q "$1" main:refs/heads/seq-$2 2>"$WORK/err-$2" ||
            { echo "push to $1 failed: $(cat "$WORK/err-$2")" >&2; exit 1; }
        t1=$(now_ns)
        times+=($(((t1 - t0) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v n="$PUSHES" '{a[NR]=$1; s+=$1} END {
        printf "%.1f %.1f %.1f", a[int((n+1)/2)]/1000, a[int(n*0.99+0.999)]/1000, n/(s/1e6) }'
}

# P pushers for S seconds, each pushing one small commit at a time to its branch of the
# URL `$1` (with %d replaced by the pusher's repository number when $3 = many).
concurrent() { # $1 url pattern, $2 label, $3 one|many
    local p deadline=$(($(date +%s) + SECONDS_EACH)) workers=()
    for p in $(seq 1 "$PUSHERS"); do
        (
            dir="$WORK/con-$2-$p"
            seed "$dir"
            url=${1//%d/$((p - 1))}
            git "${AUTH[@]}" -C "$dir" push -q "$url" "main:refs/heads/p$p"
            n=0 k=0 failed=0
            while (($(date +%s) < deadline)); do
                k=$((k + 1))
                echo "$k" >"$dir/f"
                git -C "$dir" add f
                git -C "$dir" commit -q -m "$k"
                if git "${AUTH[@]}" -C "$dir" push -q "$url" "main:refs/heads/p$p" 2>"$dir.err"; then
                    n=$((n + 1))
                else
                    failed=$((failed + 1))
                    echo "push to $url failed: $(tail -2 "$dir.err")" >&2
                fi
            done
            echo "$n" >"$WORK/count-$2-$p"
        ) &
        workers+=($!)
    done
    wait "${workers[@]}"
    cat "$WORK"/count-"$2"-* | awk -v s="$SECONDS_EACH" '{t+=$1} END {printf "%.1f", t/s}'
}

L1=$(leader_node bench/one.git)
F1=$(((L1 % 3) + 1))
echo "==> sequential one-commit pushes ($PUSHES each): p50 ms, p99 ms, pushes/s"
FILE_SEQ=$(sequential "file://$WORK/local-one.git" file)
echo "  file:// bare repository       $FILE_SEQ"
BACKEND_SEQ=$(sequential "http://127.0.0.1:$BACKEND_PORT/one.git" backend)
echo "  git http-backend (CGI)        $BACKEND_SEQ"
LEADER_SEQ=$(sequential "$(git_url "$L1" bench/one.git)" leader)
echo "  raftd, leader's URL           $LEADER_SEQ"
FOLLOWER_SEQ=$(sequential "$(git_url "$F1" bench/one.git)" follower)
echo "  raftd, a follower's URL       $FOLLOWER_SEQ"

echo "==> $PUSHERS concurrent pushers for ${SECONDS_EACH}s: pushes/s"
C_FILE1=$(concurrent "file://$WORK/local-one.git" file1 one)
C_FILE100=$(concurrent "file://$WORK/local-many-%d.git" file100 many)
C_BACK1=$(concurrent "http://127.0.0.1:$BACKEND_PORT/one.git" back1 one)
C_BACK100=$(concurrent "http://127.0.0.1:$BACKEND_PORT/many-%d.git" back100 many)
C_RAFT1=$(concurrent "$(git_url "$L1" bench/one.git)" raft1 one)
# 100 repositories: each pusher uses the Git URL of node 1 (leaders are spread; a
# follower redirects).
C_RAFT100=$(concurrent "$(git_url 1 'bench/many-%d.git')" raft100 many)
printf '  %-30s %10s %10s\n' "" "1 repo" "100 repos"
printf '  %-30s %10s %10s\n' "file:// bare repository" "$C_FILE1" "$C_FILE100"
printf '  %-30s %10s %10s\n' "git http-backend (CGI)" "$C_BACK1" "$C_BACK100"
printf '  %-30s %10s %10s\n' "raftd (3 replicas)" "$C_RAFT1" "$C_RAFT100"

echo "==> ${LARGE_MIB} MiB push of random blobs, and clones"
BIG="$WORK/big"
git init -q -b main "$BIG"
for i in $(seq 1 $((LARGE_MIB / 4))); do head -c $((4 << 20)) /dev/urandom >"$BIG/blob-$i.bin"; done
git -C "$BIG" add .
git -C "$BIG" commit -q -m big
git -C "$BIG" -c core.bigFileThreshold=1m repack -q -a -d
LL=$(leader_node bench/large.git)
LF=$(((LL % 3) + 1))
t0=$(now_ns)
git -C "$BIG" push -q "file://$WORK/local-large.git" main
t1=$(now_ns)
FILE_BIG=$(awk -v b="$LARGE_MIB" -v t=$(((t1 - t0) / 1000)) 'BEGIN {printf "%.0f", b/(t/1e6)}')
t0=$(now_ns)
git "${AUTH[@]}" -C "$BIG" push -q "$(git_url "$LF" bench/large.git)" main
t1=$(now_ns)
RAFT_BIG=$(awk -v b="$LARGE_MIB" -v t=$(((t1 - t0) / 1000)) 'BEGIN {printf "%.0f", b/(t/1e6)}')
RAFT_BIG_S=$(awk -v t=$(((t1 - t0) / 1000)) 'BEGIN {printf "%.1f", t/1e6}')
clone_rate() { # $1 url, $2 dir
    local t0 t1
    t0=$(now_ns)
    git "${AUTH[@]}" clone -q --bare "$1" "$2"
    t1=$(now_ns)
    awk -v b="$LARGE_MIB" -v t=$(((t1 - t0) / 1000)) 'BEGIN {printf "%.0f", b/(t/1e6)}'
}
sleep 2 # followers apply the push
CLONE_FILE=$(clone_rate "file://$WORK/local-large.git" "$WORK/clone-file")
CLONE_LEADER=$(clone_rate "$(git_url "$LL" bench/large.git)" "$WORK/clone-leader")
CLONE_FOLLOWER=$(clone_rate "$(git_url "$LF" bench/large.git)" "$WORK/clone-follower")
echo "  push MB/s:  file:// $FILE_BIG, raftd $RAFT_BIG (${RAFT_BIG_S} s through a follower's URL)"
echo "  clone MB/s: file:// $CLONE_FILE, raftd leader $CLONE_LEADER, raftd follower $CLONE_FOLLOWER"

p50() { echo "$1" | awk '{print $1}'; }
echo
echo "==> ratios"
awk -v a="$(p50 "$LEADER_SEQ")" -v b="$(p50 "$FILE_SEQ")" 'BEGIN {printf "  one-commit push p50, raftd leader / file://:        %.2fx (target <= 1.5x)\n", a/b}'
awk -v a="$(p50 "$FOLLOWER_SEQ")" -v b="$(p50 "$FILE_SEQ")" 'BEGIN {printf "  one-commit push p50, raftd follower URL / file://: %.2fx\n", a/b}'
awk -v a="$(p50 "$LEADER_SEQ")" -v b="$(p50 "$BACKEND_SEQ")" 'BEGIN {printf "  one-commit push p50, raftd leader / http-backend:   %.2fx\n", a/b}'
awk -v a="$CLONE_FOLLOWER" -v b="$CLONE_LEADER" 'BEGIN {printf "  clone MB/s, follower / leader:                     %.2fx (target >= 1.0x)\n", a/b}'
echo "machine: $(nproc) cores, $(uname -r), git $(git --version | awk '{print $3}'), $(date -u +%Y-%m-%d)"

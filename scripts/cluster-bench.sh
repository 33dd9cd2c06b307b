#!/usr/bin/env bash
# cluster-bench.sh: what cluster mode costs. The same fleet three times on this host:
#   0. the conventional peer, ../shared/peers/tokio-ws (the reference every ratio is taken to);
#   1. one gateway on its embedded defaults (no Redis), N charge points;
#   2. three gateways in cluster mode sharing one Redis, N/3 charge points each, three
#      ocpp-bench processes at once (HAProxy is left out: it holds two descriptors per
#      connection, and this machine allows 20,000 per process).
# Both run the heartbeat scenario (one Heartbeat per charge point every --interval) for
# --duration once all are booted. Prints connect + boot rate, Heartbeat round-trip p99 and
# gateway CPU of each, writes the reports to DIR (default bench/results/cluster).
#
#   scripts/cluster-bench.sh [--connections N] [--interval 10s] [--duration 30s] [--no-build] [--out DIR]
#
# Builds the peer into ${TOKIO_WS_TARGET:-$TMPDIR/tokio-ws-peer-target} (as bench.sh does).
#
# Needs redis-server. Loopback only; every process it starts is stopped on exit.
set -euo pipefail

connections=19000
interval=10s
duration=30s
build=1
out=bench/results/cluster
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="${2:?}"; shift ;;
        --interval) interval="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --no-build) build=0 ;;
        --out) out="${2:?}"; shift ;;
        -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "cluster-bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
for tool in redis-server redis-cli jq; do
    command -v "$tool" >/dev/null || { echo "cluster-bench.sh: $tool is needed" >&2; exit 2; }
done
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
start_run cluster-bench "$out" "$build"
build_peer "$build"

redis_port=16391
# Runs ocpp-bench: $1 report name, $2 port, $3 charge points, $4 identity prefix, $5 gateway
# pid, $6 source addresses; in the background, sets $bench_pid.
start_bench() {
    "$bench_bin" run --url "ws://127.0.0.1:$2/ocpp/" --connections "$3" --id-prefix "$4" \
        --scenario heartbeat --interval "$interval" --duration "$duration" --source-ips "$6" \
        --ramp-timeout 120s --server-pid "$5" --json "$out/$1.json" --quiet >"$out/$1.txt" 2>&1 &
    bench_pid=$!
    pids+=("$bench_pid")
}
figures() { # rate/s, p99 ms, gateway CPU for the ramp and the steady phase
    jq -r '[.connect.connect_boot_rate_per_s // 0, (.latency_us.round_trip.p99 / 1000),
            .server.cpu_s.ramp // 0, .server.cores_steady // 0] | @tsv' "$1"
}

echo "cluster-bench.sh: the tokio-ws peer, $connections charge points" >&2
start_peer 18309
start_bench peer 18309 "$connections" CP "$peer_pid" 127.0.0.2-127.0.0.60
wait "$bench_pid"
kill -TERM "$peer_pid"; wait "$peer_pid" 2>/dev/null || true

echo "cluster-bench.sh: 1 node, no Redis, $connections charge points" >&2
start_gateway single 18310
start_bench single 18310 "$connections" CP "$gateway_pid" 127.0.0.2-127.0.0.60
wait "$bench_pid"
kill -TERM "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true

echo "cluster-bench.sh: 3 nodes sharing Redis, $connections charge points" >&2
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
pids+=($!)
wait_until 50 redis-cli -p "$redis_port" ping >/dev/null 2>&1
share=$(((connections + 2) / 3))
benches=()
for n in 1 2 3; do
    start_gateway "node$n" $((18310 + n)) \
        "cluster.redis_url=\"redis://127.0.0.1:$redis_port/\"" "cluster.prefix=\"bench:\""
    count=$share
    ((n == 3)) && count=$((connections - 2 * share))
    start_bench "node$n" $((18310 + n)) "$count" "CP$n-" "$gateway_pid" "127.0.0.$((n * 20))-127.0.0.$((n * 20 + 19))"
    benches+=("$bench_pid")
done
for pid in "${benches[@]}"; do wait "$pid"; done
# Registry entries go as the benches disconnect; the shared registrations stay.
shared=$(redis-cli -p "$redis_port" --scan --pattern 'bench:state:*' | wc -l)

{
    echo "heartbeat scenario, one Heartbeat per charge point every $interval, $duration measured"
    read -r rate p99 ramp cores < <(figures "$out/peer.json")
    printf "tokio-ws peer:     %d charge points, connect+boot %.0f/s, Heartbeat p99 %.2f ms, server CPU ramp %.2f s, steady %.3f cores\n" \
        "$connections" "$rate" "$p99" "$ramp" "$cores"
    read -r rate p99 ramp cores < <(figures "$out/single.json")
    printf "1 node, no Redis:  %d charge points, connect+boot %.0f/s, Heartbeat p99 %.2f ms, gateway CPU ramp %.2f s, steady %.3f cores\n" \
        "$connections" "$rate" "$p99" "$ramp" "$cores"
    total_ramp=0; total_cores=0; worst=0; slowest=0
    for n in 1 2 3; do
        read -r rate p99 ramp cores < <(figures "$out/node$n.json")
        printf "  node%d: connect+boot %.0f/s, Heartbeat p99 %.2f ms, CPU ramp %.2f s, steady %.3f cores\n" \
            "$n" "$rate" "$p99" "$ramp" "$cores"
        total_ramp=$(awk -v a="$total_ramp" -v b="$ramp" 'BEGIN { print a + b }')
        total_cores=$(awk -v a="$total_cores" -v b="$cores" 'BEGIN { print a + b }')
        worst=$(awk -v a="$worst" -v b="$p99" 'BEGIN { print (b > a) ? b : a }')
        slowest=$(jq -r --argjson s "$slowest" '[.connect.time_to_all_booted_s // 0, $s] | max' "$out/node$n.json")
    done
    printf "3 nodes + Redis:   %d charge points, connect+boot %.0f/s (all / slowest node's ramp), Heartbeat p99 %.2f ms (worst node), gateway CPU ramp %.2f s, steady %.3f cores (sum)\n" \
        "$connections" "$(awk -v n="$connections" -v t="$slowest" 'BEGIN { print (t > 0) ? n / t : 0 }')" \
        "$worst" "$total_ramp" "$total_cores"
    echo "registrations shared in Redis (bench:state:*): $shared"
} | tee "$out/summary.txt"

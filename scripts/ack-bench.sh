#!/usr/bin/env bash
# ack-bench.sh: what holding StartTransaction until it is durable costs. The same fleet three
# times on this host, in the realistic scenario with many charging sessions (a Heartbeat a
# minute, a session every 30 s per charge point on average, 10-30 s long, MeterValues every 5 s
# while charging), journal and state file on, events.ack_after_write:
#   0. the conventional peer, ../shared/peers/tokio-ws (the reference for the speed figures);
#   1. the gateway as it was at REV (default 7cd5d88: StopTransaction and MeterValues held,
#      StartTransaction answered at once);
#   2. the gateway of this checkout (StartTransaction held too, until the journal line and the
#      state file commit of its open transaction are durable).
# Prints StartTransaction and StopTransaction p50/p99, the round trip p50/p99 of everything else
# (Heartbeats and StatusNotifications are most of it) and gateway CPU of each; writes the
# reports to DIR (default bench/results/ack).
#
#   scripts/ack-bench.sh [--connections N] [--duration 60s] [--rev REV] [--no-build] [--out DIR]
#
# Needs jq. Loopback only; every process it starts is stopped on exit.
set -euo pipefail

connections=5000
duration=60s
rev=7cd5d88
build=1
out=bench/results/ack
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --rev) rev="${2:?}"; shift ;;
        --no-build) build=0 ;;
        --out) out="${2:?}"; shift ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "ack-bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
command -v jq >/dev/null || { echo "ack-bench.sh: jq is needed" >&2; exit 2; }
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
start_run ack-bench "$out" "$build"
build_peer "$build"

# The earlier gateway, built from REV in a worktree of its own (kept between runs).
before_dir="${ACK_BENCH_BEFORE:-${TMPDIR:-/tmp}/ocpp-gateway-before-$rev}"
if [[ ! -d "$before_dir" ]]; then
    git worktree add --detach "$before_dir" "$rev" >/dev/null
fi
if ((build)) || [[ ! -x "$before_dir/target/release/ocpp-gateway" ]]; then
    (cd "$before_dir" && cargo build --release --quiet --bin ocpp-gateway)
fi

scenario=(--scenario realistic --interval 60s --meter-interval 5s --sessions-per-hour 120
          --session-length 20s)

run_bench() { # NAME PORT PID
    "$bench_bin" run --url "ws://127.0.0.1:$2/ocpp/" --connections "$connections" --id-prefix CP \
        "${scenario[@]}" --duration "$duration" --source-ips 127.0.0.2-127.0.0.30 \
        --ramp-timeout 120s --server-pid "$3" --json "$out/$1.json" --quiet >"$out/$1.txt" 2>&1 &
    bench_pid=$!
    pids+=("$bench_pid")
    wait "$bench_pid" || true
}
figures() { # StartTx p50 p99 n, StopTx p50 p99 n, round trip p50 p99, CPU steady, errors
    jq -r '[(.latency_us.start_transaction.p50 // 0) / 1000, (.latency_us.start_transaction.p99 // 0) / 1000,
            .latency_us.start_transaction.count // 0,
            (.latency_us.stop_transaction.p50 // 0) / 1000, (.latency_us.stop_transaction.p99 // 0) / 1000,
            .latency_us.stop_transaction.count // 0,
            .latency_us.round_trip.p50 / 1000, .latency_us.round_trip.p99 / 1000,
            .server.cores_steady // 0, (.errors.total // 0)] | @tsv' "$1"
}

echo "ack-bench.sh: the tokio-ws peer, $connections charge points" >&2
start_peer 18409
run_bench peer 18409 "$peer_pid"
kill -TERM "$peer_pid"; wait "$peer_pid" 2>/dev/null || true

echo "ack-bench.sh: the gateway at $rev" >&2
journal=('events.sink="journal"' "events.ack_after_write=true")
start_bin="$before_dir/target/release/ocpp-gateway" start_config="$before_dir/config.toml" \
    start_gateway before 18410 "${journal[@]}"
run_bench before 18410 "$gateway_pid"
kill -TERM "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true

echo "ack-bench.sh: the gateway of this checkout" >&2
start_gateway after 18411 "${journal[@]}"
run_bench after 18411 "$gateway_pid"
kill -TERM "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true

{
    echo "realistic scenario, many sessions: ${scenario[*]}, $connections charge points, $duration measured after the ramp"
    for name in peer before after; do
        read -r s50 s99 sn t50 t99 tn r50 r99 cores errors < <(figures "$out/$name.json")
        printf "%-7s StartTx p50/p99 %.2f/%.2f ms (n=%d)  StopTx p50/p99 %.2f/%.2f ms (n=%d)  round trip p50/p99 %.2f/%.2f ms  steady %.3f cores  errors %d\n" \
            "$name" "$s50" "$s99" "$sn" "$t50" "$t99" "$tn" "$r50" "$r99" "$cores" "$errors"
    done
} | tee "$out/summary.txt"

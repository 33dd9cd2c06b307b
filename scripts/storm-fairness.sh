#!/usr/bin/env bash
# storm-fairness.sh: do handshakes starve the charge points that stayed connected? One gateway
# with security profile 2 (wss, Basic auth); STEADY charge points connect and send Heartbeats
# (RATE a second across them) for DURATION; once they are booted, STORM more charge points
# connect, all drop at once and reconnect (ocpp-bench's storm scenario: two waves of TLS
# handshakes). Prints the steady fleet's Heartbeat round trip (p50, p99, p99.9, max over the
# whole window, and the worst per-second p99), how long the storm took, and errors; the two
# reports go to OUT (default bench/results/storm-fairness).
#
#   scripts/storm-fairness.sh [--steady 5000] [--storm 14000] [--rate 5000] [--duration 40s]
#                             [--tls-resume] [--tls12] [--no-build] [--out DIR]
#
# Needs jq. Loopback only; every process it starts is stopped on exit.
set -euo pipefail

steady=5000
storm=14000
rate=5000
duration=40s
build=1
tls_flags=()
out=bench/results/storm-fairness
while [[ $# -gt 0 ]]; do
    case "$1" in
        --steady) steady="${2:?}"; shift ;;
        --storm) storm="${2:?}"; shift ;;
        --rate) rate="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --tls-resume) tls_flags+=(--tls-resume) ;;
        --tls12) tls_flags+=(--tls12) ;;
        --no-build) build=0 ;;
        --out) out="${2:?}"; shift ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "storm-fairness.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
command -v jq >/dev/null || { echo "storm-fairness.sh: jq is needed" >&2; exit 2; }
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
start_run storm-fairness "$out" "$build"
connections=$((steady + storm))
port=18470

"$bench_bin" certs --out "$work/certs" --connections 0 >/dev/null
"$bench_bin" credentials --seed fair --id-prefix steady- --connections "$steady" \
    --out "$work/steady.cred" >/dev/null
"$bench_bin" credentials --seed fair --id-prefix storm- --connections "$storm" \
    --out "$work/storm.cred" >/dev/null
cat "$work/steady.cred" "$work/storm.cred" >"$work/credentials"
start_gateway gateway "$port" \
    "server.max_connections=$((2 * connections + 1000))" \
    "security.profile=2" \
    "security.credentials=\"$work/credentials\"" \
    "security.tls_cert=\"$work/certs/server.pem\"" \
    "security.tls_key=\"$work/certs/server.key\""

common=(--url "wss://127.0.0.1:$port/ocpp/" --ca "$work/certs/ca.pem" --basic-auth fair
        --source-ips 127.0.0.2-127.0.0.30 --ramp-timeout 120s "${tls_flags[@]}")
echo "storm-fairness.sh: $steady connected charge points, $rate Heartbeats/s for $duration" >&2
"$bench_bin" run "${common[@]}" --id-prefix steady- --connections "$steady" --scenario heartbeat \
    --rate "$rate" --duration "$duration" --json "$out/steady.json" \
    >"$out/steady.txt" 2>"$out/steady.log" &
steady_pid=$!
pids+=("$steady_pid")
wait_until 1200 grep -q "steady " "$out/steady.log" || { echo "the steady fleet did not boot" >&2; exit 2; }
echo "storm-fairness.sh: a storm of $storm charge points" >&2
"$bench_bin" run "${common[@]}" --id-prefix storm- --connections "$storm" --scenario storm \
    --duration 5s --json "$out/storm.json" >"$out/storm.txt" 2>"$out/storm.log" || true
wait "$steady_pid" || true

jq -r '"steady fleet Heartbeat round trip (ms): p50 \(.latency_us.round_trip.p50/1000), p99 \(.latency_us.round_trip.p99/1000), p99.9 \(.latency_us.round_trip.p999/1000), max \(.latency_us.round_trip.max/1000); worst per-second p99 (from its second steady second) \([.series[] | select(.phase == "steady")][2:] | map(.round_trip_p99_us) | max / 1000); errors \(.errors.total)"' "$out/steady.json"
jq -r '"storm: \(.connect.target) charge points, first connect wave \(.connect.time_to_all_booted_s) s, reconnect storm \(.storm.time_to_all_booted_s) s, TLS resumed \(.connect.tls_resumed // 0), errors \(.errors.total)"' "$out/storm.json"

#!/usr/bin/env bash
# failover.sh: three gateways sharing one Redis behind HAProxy (deploy/haproxy.cfg); charge
# points connect through HAProxy; one node is killed with SIGKILL; how long until every one of
# its charge points is connected and booted on the others, and the registry names no dead node.
#
#   scripts/failover.sh [--connections N] [--no-build] [--out DIR]
#
# Default 6,000 charge points (HAProxy holds two descriptors per connection, and this machine
# allows 20,000 per process). ocpp-bench's charge points reconnect with its back-off (full
# jitter under 1 s, doubling) and, as the spec says, do not boot again (--resume): their first
# message is a StatusNotification, which the new node must accept from the shared state.
# Needs redis-server and haproxy. Loopback only; every process it starts is stopped on exit.
# Prints the figures; writes the bench report and the logs to DIR (default
# bench/results/failover).
set -euo pipefail

connections=6000
build=1
out=bench/results/failover
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="${2:?}"; shift ;;
        --no-build) build=0 ;;
        --out) out="${2:?}"; shift ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "failover.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
for tool in redis-server redis-cli haproxy curl jq; do
    command -v "$tool" >/dev/null || { echo "failover.sh: $tool is needed" >&2; exit 2; }
done
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
start_run failover "$out" "$build"

redis_port=16390
front=18190
prefix="failover:"
connections_of() { # the number of connections node $1 reports (0 when it does not answer)
    local n
    n=$(curl -s --max-time 1 "http://127.0.0.1:$((19190 + $1))/health" | jq -r '.connections // 0' 2>/dev/null)
    echo "${n:-0}"
}

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
pids+=($!)
wait_until 50 redis-cli -p "$redis_port" ping >/dev/null 2>&1

for n in 1 2 3; do
    mkdir -p "$work/node$n"
    config_with "$repo/config.toml" \
        "server.listen=\"127.0.0.1:$((front + n))\"" \
        "server.node_id=\"node$n\"" \
        "server.proxy_protocol=true" \
        "server.pin_cores=false" \
        "admin.listen=\"127.0.0.1:$((19190 + n))\"" \
        "ocpp.max_calls_per_second=0" \
        "cluster.redis_url=\"redis://127.0.0.1:$redis_port/\"" \
        "cluster.prefix=\"$prefix\"" \
        >"$work/node$n/config.toml"
    (cd "$work/node$n" && exec "$gateway_bin" --config config.toml) >"$out/node$n.log" 2>&1 &
    pids+=($!)
    eval "node${n}_pid=$!"
done
for n in 1 2 3; do
    wait_until 150 grep -q "listening on" "$out/node$n.log" || { echo "node$n did not start" >&2; exit 2; }
done

OCPP_LISTEN="127.0.0.1:$front" OCPP_STATS="127.0.0.1:18404" \
    OCPP_NODE1="127.0.0.1:$((front + 1))" OCPP_ADMIN_PORT1=19191 \
    OCPP_NODE2="127.0.0.1:$((front + 2))" OCPP_ADMIN_PORT2=19192 \
    OCPP_NODE3="127.0.0.1:$((front + 3))" OCPP_ADMIN_PORT3=19193 \
    haproxy -db -n $((connections + 1000)) -f "$repo/deploy/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
pids+=($!)
wait_until 50 bash -c "exec 3<>/dev/tcp/127.0.0.1/$front" 2>/dev/null

echo "failover.sh: $connections charge points through HAProxy to three nodes" >&2
"$bench_bin" run --url "ws://127.0.0.1:$front/ocpp/" --connections "$connections" --scenario idle \
    --duration 60s --source-ips 127.0.0.2-127.0.0.9 --ramp-timeout 60s --json "$out/bench.json" --resume \
    --quiet >"$out/bench.txt" 2>&1 &
bench_pid=$!
pids+=("$bench_pid")
all_on() { [[ $(($(connections_of 1) + $(connections_of 2) + $(connections_of 3))) -ge "$connections" ]]; }
wait_until 600 all_on || { echo "not all connected" >&2; exit 1; }
registered() { [[ "$(redis-cli -p "$redis_port" --scan --pattern "${prefix}cp:*" | wc -l)" -ge "$connections" ]]; }
wait_until 100 registered || { echo "the registry did not fill" >&2; exit 1; }
held=$(connections_of 2)
echo "failover.sh: node1 $(connections_of 1), node2 $held, node3 $(connections_of 3); killing node2" >&2

# shellcheck disable=SC2154 # set by eval above
kill -9 "$node2_pid"
killed=$(date +%s.%N)
wait "$node2_pid" 2>/dev/null || true
survivors() { [[ $(($(connections_of 1) + $(connections_of 3))) -ge "$connections" ]]; }
wait_until 600 survivors || { echo "not all came back within 60 s" >&2; exit 1; }
back=$(date +%s.%N)
dead_entries() {
    redis-cli -p "$redis_port" --scan --pattern "${prefix}cp:*" |
        while read -r key; do redis-cli -p "$redis_port" hget "$key" node; done | grep -c '^node2$' || true
}
wait_until 100 registered || true
left=$(dead_entries)
wait "$bench_pid" || true
booted=$(jq '.connect.booted_at_end' "$out/bench.json")
resumed=$(jq '.connect.resumes' "$out/bench.json")
refused=$(jq '.connect.resumes_refused' "$out/bench.json")
errors=$(jq '.errors.total' "$out/bench.json")
seconds=$(awk -v a="$killed" -v b="$back" 'BEGIN { printf "%.2f", b - a }')

{
    echo "node2 held $held of $connections charge points; SIGKILL at t=0"
    echo "all $connections connected again through HAProxy (to node1 and node3) after $seconds s"
    echo "registry entries still naming node2 afterwards: $left"
    echo "reconnected without booting again, accepted: $resumed; refused (booted instead): $refused"
    echo "charge points accepted at the end of the bench: $booted (bench errors: $errors)"
} | tee "$out/summary.txt"

#!/usr/bin/env bash
# kafka-bench.sh: what publishing to Kafka costs. The same fleet three times on this host, in
# the realistic scenario at a busy hour's rates (a Heartbeat a minute; a charging session every
# two minutes per charge point on average, 20-60 s long, MeterValues every 15 s while charging):
#   0. the conventional peer, ../shared/peers/tokio-ws (the reference for the speed figures);
#   1. the gateway with the journal only (events.sink = "journal", ack_after_write);
#   2. the gateway with journal and Kafka (a tansu broker on loopback): every StopTransaction
#      and MeterValues answered only once the journal has it and the broker confirmed it.
# Prints integration events confirmed per second, StopTransaction p99 (held until Kafka
# confirmed), Heartbeat/all round trip p99 and gateway CPU of each; writes the reports to DIR
# (default bench/results/kafka).
#
#   scripts/kafka-bench.sh [--connections N] [--duration 90s] [--no-build] [--out DIR]
#
# Needs tansu on the PATH (`cargo install tansu --features dynostore`; .ci/run puts it in
# ~/.cache/ocpp-gateway-ci/bin) and jq, curl. Loopback only; every process it starts is
# stopped on exit.
set -euo pipefail

connections=19000
duration=90s
build=1
out=bench/results/kafka
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --no-build) build=0 ;;
        --out) out="${2:?}"; shift ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "kafka-bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export PATH="${OCPP_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocpp-gateway-ci}/bin:$PATH"
for tool in tansu jq curl; do
    command -v "$tool" >/dev/null || { echo "kafka-bench.sh: $tool is needed" >&2; exit 2; }
done
# shellcheck source=scripts/lib/run.sh
source scripts/lib/run.sh
start_run kafka-bench "$out" "$build"
build_peer "$build"

scenario=(--scenario realistic --interval 60s --meter-interval 15s --sessions-per-hour 30
          --session-length 40s)
kafka_port=19092
admin_port=19190

# Runs ocpp-bench against port $2 for server pid $3, report name $1 (waits for it).
run_bench() {
    "$bench_bin" run --url "ws://127.0.0.1:$2/ocpp/" --connections "$connections" --id-prefix CP \
        "${scenario[@]}" --duration "$duration" --source-ips 127.0.0.2-127.0.0.60 \
        --ramp-timeout 120s --server-pid "$3" --json "$out/$1.json" --quiet >"$out/$1.txt" 2>&1 &
    bench_pid=$!
    pids+=("$bench_pid")
    wait "$bench_pid" || true
}
# Samples the gateway's Kafka counters every 5 s into $out/$1.metrics (unix time, confirmed,
# produced, refused, failed, lost) while it runs; sets $sampler_pid.
start_sampler() {
    (
        while kill -0 "$gateway_pid" 2>/dev/null; do
            curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v t="$(date +%s.%N)" '
                /^ocpp_gateway_kafka_events_confirmed_total / { c = $2 }
                /^ocpp_gateway_kafka_events_produced_total / { p = $2 }
                /^ocpp_gateway_kafka_refused_total / { r = $2 }
                /^ocpp_gateway_kafka_events_failed_total / { f = $2 }
                /^ocpp_gateway_kafka_events_lost_total / { l = $2 }
                END { if (c != "") print t, c, p, r, f, l }'
            sleep 5
        done
    ) >"$out/$1.metrics" &
    sampler_pid=$!
    pids+=("$sampler_pid")
}
figures() { # StopTransaction p99 ms, round trip p99 ms, CPU ramp s, steady cores, StopTx count, errors
    jq -r '[(.latency_us.stop_transaction.p99 // 0) / 1000, (.latency_us.round_trip.p99 / 1000),
            .server.cpu_s.ramp // 0, .server.cores_steady // 0,
            .latency_us.stop_transaction.count // 0, (.errors.total // 0)] | @tsv' "$1"
}

echo "kafka-bench.sh: the tokio-ws peer, $connections charge points" >&2
start_peer 18309
run_bench peer 18309 "$peer_pid"
kill -TERM "$peer_pid"; wait "$peer_pid" 2>/dev/null || true

echo "kafka-bench.sh: journal only, $connections charge points" >&2
# The admin listener for the Kafka counters; no transaction-id file (two gateways in a row).
gateway_settings=("admin.listen=\"127.0.0.1:$admin_port\"" 'ocpp.transaction_id_file=""')
start_gateway journal 18310 "${gateway_settings[@]}" 'events.sink="journal"'
run_bench journal 18310 "$gateway_pid"
kill -TERM "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true

echo "kafka-bench.sh: journal and Kafka, $connections charge points" >&2
url="tcp://127.0.0.1:$kafka_port"
(cd "$work" && RUST_LOG=warn exec tansu broker --storage-engine memory://tansu/ \
    --listener-url "$url" --advertised-listener-url "$url") >"$out/tansu.log" 2>&1 &
tansu_pid=$!
pids+=("$tansu_pid")
wait_until 100 bash -c "exec 3<>/dev/tcp/127.0.0.1/$kafka_port" 2>/dev/null
tansu topic create ocpp-events-up --broker "$url" --partitions 6 >/dev/null
tansu topic create commands-down --broker "$url" --partitions 1 >/dev/null
start_gateway kafka 18311 "${gateway_settings[@]}" 'events.sink=["journal", "kafka"]' \
    "kafka.brokers=\"127.0.0.1:$kafka_port\""
start_sampler kafka
run_bench kafka 18311 "$gateway_pid"
curl -s "http://127.0.0.1:$admin_port/health" >"$out/kafka-health.json" || true
kill -TERM "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true

{
    echo "realistic scenario, busy hour: ${scenario[*]}, $duration measured after the ramp"
    read -r stop p99 ramp cores stops errors < <(figures "$out/peer.json")
    printf "tokio-ws peer:     StopTransaction p99 %.2f ms (n=%d), round trip p99 %.2f ms, server CPU ramp %.2f s, steady %.3f cores, errors %d\n" \
        "$stop" "$stops" "$p99" "$ramp" "$cores" "$errors"
    read -r stop p99 ramp cores stops errors < <(figures "$out/journal.json")
    printf "journal only:      StopTransaction p99 %.2f ms (n=%d), round trip p99 %.2f ms, gateway CPU ramp %.2f s, steady %.3f cores, errors %d\n" \
        "$stop" "$stops" "$p99" "$ramp" "$cores" "$errors"
    read -r stop p99 ramp cores stops errors < <(figures "$out/kafka.json")
    printf "journal + Kafka:   StopTransaction p99 %.2f ms (n=%d), round trip p99 %.2f ms, gateway CPU ramp %.2f s, steady %.3f cores, errors %d\n" \
        "$stop" "$stops" "$p99" "$ramp" "$cores" "$errors"
    # Events per second over the second half of the samples (the steady part of the run).
    awk '{ t[NR] = $1; c[NR] = $2; p = $3; r = $4; f = $5; l = $6 }
         END {
             if (NR < 4) { print "Kafka: too few samples"; exit }
             a = int(NR / 2)
             printf "Kafka: %.0f integration events confirmed per second (steady half), %d produced in all, %d confirmed, %d answers refused, %d failed, %d lost\n",
                 (c[NR] - c[a]) / (t[NR] - t[a]), p, c[NR], r, f, l
         }' "$out/kafka.metrics"
} | tee "$out/summary.txt"

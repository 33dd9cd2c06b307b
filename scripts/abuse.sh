#!/usr/bin/env bash
# abuse.sh: the attacks of the hardening issue against one fresh gateway, with their bounds.
#
#   scripts/abuse.sh [--neighbours N] [--rate-limit] [--out DIR] [--no-build]
#
# The shipped config.toml on loopback with one processor thread (so every well-behaved charge
# point shares the attacked processor), the per-charge-point rate limit off unless
# --rate-limit (the worst case: only the pipelining and queue bounds hold the flood back), and
# a journal of 4 MiB files (max_files = 8) so that rotation would show. Then, one after the
# other (ocpp-bench abuse is the attacker, ocpp-bench run the neighbours):
#   1. meter flood: N neighbours (default 1000) send a Heartbeat each per second while three
#      booted charge points pipeline 49 KB MeterValues for 20 s. Target: gateway RSS under
#      idle + 200 MB, neighbours' round-trip p99 under 50 ms, no neighbour error.
#   2. journal flood: a charge point that never boots pipelines 64 KiB DataTransfers for 10 s.
#      Target: the journal grows by less than 10 MB, no journal file present before is gone.
#   3. admin slowloris: 64 clients send a request a byte a second while /health is asked every
#      100 ms. Target: every /health answered 200 within 1 s, every slow client 408 within the
#      10 s request deadline (counted from its first byte).
# Prints one line per bound with the figure and PASS or FAIL; the raw figures are in DIR.
# Disk: with the rate limit off, attack 1 journals its MeterValues whole (billing data): about
# 4 GB in TMPDIR, removed when the script ends. Keep 6 GB free there.
# Exit status: 0 all bounds held, 1 one did not, 2 set-up error. Everything stays on loopback.
set -euo pipefail

neighbours=1000
rate_limit=0
out=bench/results/abuse
build=1
port=18180
admin_port=19191
while [[ $# -gt 0 ]]; do
    case "$1" in
        --neighbours) neighbours="${2:?}"; shift ;;
        --rate-limit) rate_limit=1 ;;
        --out) out="${2:?}"; shift ;;
        --no-build) build=0 ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "abuse.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=scripts/lib/config.sh
source "$repo/scripts/lib/config.sh"
# shellcheck source=scripts/lib/wait.sh
source "$repo/scripts/lib/wait.sh"
gateway_bin="$repo/target/release/ocpp-gateway"
bench_bin="$repo/target/release/ocpp-bench"
if ((build)); then
    cargo build --release --workspace
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ocpp-abuse.XXXXXX")"
gateway_pid=""
cleanup() {
    if [[ -n "$gateway_pid" ]]; then
        kill -TERM "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "abuse.sh: $*" >&2
    exit 2
}

health() { curl -s --max-time 2 "http://127.0.0.1:$admin_port/health"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$gateway_pid/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$gateway_pid/status"; }
journal_bytes() { cat "$work"/ocpp-gateway.events.jsonl* 2>/dev/null | wc -c; }
journal_inodes() { stat -c '%i' "$work"/ocpp-gateway.events.jsonl* 2>/dev/null | sort; }

config_with "$repo/config.toml" \
    "server.listen=\"127.0.0.1:$port\"" \
    "admin.listen=\"127.0.0.1:$admin_port\"" \
    "processor.threads=1" \
    "ocpp.max_calls_per_second=$((rate_limit ? 20 : 0))" \
    'ocpp.transaction_id_file=""' \
    "events.max_file_bytes=4194304" \
    >"$work/config.toml"
(cd "$work" && exec "$gateway_bin" --config "$work/config.toml") >"$out/gateway.log" 2>&1 &
gateway_pid=$!
wait_until 150 grep -qs "listening on" "$out/gateway.log" || die "the gateway did not start: $(cat "$out/gateway.log")"

failed=0
verdict() { # verdict NAME FIGURE OK(0/1)
    local result=PASS
    if [[ "$3" != 1 ]]; then result=FAIL; failed=1; fi
    printf '  %-52s %-28s %s\n' "$1" "$2" "$result" | tee -a "$out/summary.txt"
}
: >"$out/summary.txt"

echo "== 1. three charge points pipeline 49 KB MeterValues for 20 s; $neighbours neighbours measure" >&2
"$bench_bin" run --url "ws://127.0.0.1:$port/ocpp/" --connections "$neighbours" --scenario heartbeat \
    --rate "$neighbours" --duration 25s --id-prefix neighbour- --server-pid "$gateway_pid" \
    --json "$out/neighbours.json" --quiet >"$out/neighbours.txt" 2>&1 &
bench_pid=$!
neighbours_connected() { [[ "$(health | jq -r .connections 2>/dev/null)" -ge "$neighbours" ]]; }
wait_until 600 neighbours_connected || die "the neighbours did not connect"
idle_kib=$(rss_kib)
journal_start=$(journal_bytes)
"$bench_bin" abuse meter-flood --target "127.0.0.1:$port" --connections 3 --duration 20s \
    --size 49000 >"$out/meter-flood.json"
peak_kib=$(hwm_kib)
wait "$bench_pid" || true
after_kib=$(rss_kib)
p99_us=$(jq '.latency_us.round_trip.p99' "$out/neighbours.json")
errors=$(jq '.errors.total' "$out/neighbours.json")
worst_second_us=$(jq '[.series[] | select(.phase == "steady") | .round_trip_p99_us] | max' "$out/neighbours.json")
growth_mb=$(((peak_kib - idle_kib) / 1024))
echo "   flood: $(cat "$out/meter-flood.json")" >&2
verdict "gateway peak RSS above idle ($((idle_kib / 1024)) MB idle)" "+$growth_mb MB (after: $((after_kib / 1024)) MB)" \
    "$((growth_mb < 200 ? 1 : 0))"
verdict "neighbours' round-trip p99 (one processor)" \
    "$(awk -v u="$p99_us" 'BEGIN { printf "%.2f ms", u / 1000 }') (worst second $(awk -v u="$worst_second_us" 'BEGIN { printf "%.1f", u / 1000 }'))" \
    "$(awk -v u="$p99_us" 'BEGIN { print (u < 50000) ? 1 : 0 }')"
verdict "neighbours' errors" "$errors" "$((errors == 0 ? 1 : 0))"
# Not a bound: MeterValues of an accepted charge point are billing data, journaled whole
# (ocpp.max_calls_per_second x websocket.max_message_size is what bounds them).
echo "  (journal written during the meter flood: $((($(journal_bytes) - journal_start) / 1048576)) MiB)" \
    | tee -a "$out/summary.txt"

echo "== 2. a charge point that never boots pipelines 64 KiB DataTransfers for 10 s" >&2
before_bytes=$(journal_bytes)
journal_inodes >"$work/inodes-before"
"$bench_bin" abuse data-transfer-flood --target "127.0.0.1:$port" --connections 1 --duration 10s \
    --size 65536 >"$out/journal-flood.json"
# The journal thread writes what it was handed; its queue is empty when /health says so.
journal_drained() { [[ "$(health | jq -r .journal.queue_depth 2>/dev/null)" == 0 ]]; }
wait_until 100 journal_drained || true
after_bytes=$(journal_bytes)
journal_inodes >"$work/inodes-after"
gone=$(comm -23 "$work/inodes-before" "$work/inodes-after" | wc -l)
files_before=$(wc -l <"$work/inodes-before")
grew_kb=$(((after_bytes - before_bytes) / 1024))
echo "   flood: $(cat "$out/journal-flood.json")" >&2
verdict "journal growth during the flood" "$grew_kb KiB" "$((grew_kb < 10240 ? 1 : 0))"
verdict "journal files present before and gone after" "$gone of $files_before" "$((gone == 0 ? 1 : 0))"

echo "== 3. 64 admin clients send a request a byte a second; /health every 100 ms" >&2
"$bench_bin" abuse admin-slowloris --admin "127.0.0.1:$admin_port" --connections 64 \
    --byte-every 1s --probe-every 100ms --duration 30s >"$out/slowloris.json"
echo "   slowloris: $(cat "$out/slowloris.json")" >&2
health_max=$(jq '.health_max_ms' "$out/slowloris.json")
not_200=$(jq '.health_not_200' "$out/slowloris.json")
probes=$(jq '.health_probes' "$out/slowloris.json")
got_408=$(jq '.got_408' "$out/slowloris.json")
to_408=$(jq '.max_seconds_to_408' "$out/slowloris.json")
verdict "/health answered 200 (of $probes probes)" "$((probes - not_200)), slowest $health_max ms" \
    "$(awk -v m="$health_max" -v n="$not_200" 'BEGIN { print (m < 1000 && n == 0) ? 1 : 0 }')"
verdict "slow clients answered 408 within 10 s" "$got_408 of 64, latest after ${to_408} s" \
    "$(awk -v g="$got_408" -v t="$to_408" 'BEGIN { print (g == 64 && t <= 10.5) ? 1 : 0 }')"

echo
echo "abuse.sh: figures in $out (summary.txt, *.json, gateway.log)"
cat "$out/summary.txt"
exit "$failed"

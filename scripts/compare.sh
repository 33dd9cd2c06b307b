#!/usr/bin/env bash
# compare.sh: the gateway and the conventional peer (../shared/peers/tokio-ws, tokio +
# tokio-tungstenite with small buffers) measured side by side, with the same ocpp-bench flags,
# one after the other, alternating, --runs times. Absolute figures on a shared machine drift
# by 20-50% between days; ratios taken in one series hold, so the targets are ratios.
#
#   scripts/compare.sh [--connections N] [--runs R] [--out DIR] [--no-build] [--only S] [--tls]
#
# With --tls both serve wss (the gateway with security profile 2, Basic auth included; the
# peer with tokio-rustls) and the scenarios are idle, storm, saturate and heartbeat
# (DIR defaults to bench/results/compare-tls).
#
# Per run and server, four scenarios (each a fresh server, via scripts/bench.sh run):
#   idle       2 bench threads (one thread limits the rate): connect + boot rate, then RSS
#              growth per idle, booted connection at the end of 20 s idle
#   large      8,000 charge points each send one 60 KiB DataTransfer after booting, then idle
#              20 s: RSS growth per connection at the end (what a burst leaves behind)
#   saturate   closed loop, 2 bench threads: round trips/s, CPU us and context switches per
#              round trip at saturation
#   heartbeat  one Heartbeat per charge point per second (N/s offered): latency percentiles,
#              CPU per round trip
#   storm      (--tls) all connect and boot, then all drop and reconnect at once: time until
#              everyone is booted again, and errors (refusals, failed handshakes)
# Writes DIR/<server>-<scenario>-<run>.json (ocpp-bench reports) and DIR/compare.md (medians
# per server, the gateway/peer ratio); prints the table. Load stays on 127.0.0.0/8.
set -euo pipefail

connections=19000
runs=3
out=""
build=1
only=""
tls=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="${2:?}"; shift ;;
        --runs) runs="${2:?}"; shift ;;
        --out) out="${2:?}"; shift ;;
        --no-build) build=0 ;;
        --only) only="${2:?}"; shift ;;
        --tls) tls=1 ;;
        -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ "$connections" =~ ^[0-9]+$ && "$runs" =~ ^[0-9]+$ ]] || { echo "compare.sh: numbers, please" >&2; exit 2; }

if [[ -z "$out" ]]; then
    out=bench/results/compare
    ((tls)) && out=bench/results/compare-tls
fi
tls_flag=()
((tls)) && tls_flag=(--tls)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
mkdir -p "$out"
if ((build)); then
    # One build of everything (gateway, bench, peer); the runs below skip it.
    scripts/bench.sh run --server tokio --connections 10 --duration 1s --out "$out/.warmup" >/dev/null
    rm -rf "$out/.warmup"
fi

scenarios=(idle large saturate heartbeat)
((tls)) && scenarios=(idle storm saturate heartbeat)
[[ -n "$only" ]] && scenarios=("$only")
failed=0
for run in $(seq "$runs"); do
    for scenario in "${scenarios[@]}"; do
        for server in gateway tokio; do
            args=(run --no-build --server "$server" --out "$out" --name "$server-$scenario-$run" "${tls_flag[@]}")
            case "$scenario" in
                idle) args+=(--connections "$connections" --scenario idle --threads 2 --duration 20s -- --quiet) ;;
                large) args+=(--connections 8000 --scenario idle --threads 2 --duration 20s -- --quiet --large-message 61440) ;;
                saturate) args+=(--connections "$connections" --scenario saturate --threads 2 --duration 15s -- --quiet) ;;
                heartbeat) args+=(--connections "$connections" --scenario heartbeat --per-cp-rate 1 --duration 30s -- --quiet) ;;
                storm) args+=(--connections "$connections" --scenario storm --threads 2 --duration 5s -- --quiet) ;;
            esac
            echo "compare.sh: run $run/$runs, $scenario, $server" >&2
            scripts/bench.sh "${args[@]}" >/dev/null || failed=1
            if [[ -s "$out/$server-$scenario-$run/report.json" ]]; then
                mv "$out/$server-$scenario-$run/report.json" "$out/$server-$scenario-$run.json"
            fi
            rm -rf "${out:?}/$server-$scenario-$run"
        done
    done
done

python3 - "$out" "$connections" "$tls" <<'PY'
import glob, json, os, statistics, sys

out, n, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def reports(server, scenario):
    return [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{server}-{scenario}-*.json"))]

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

rows = [
    ("idle", "connect + boot per s" + (" (TLS handshake + Basic auth + BootNotification)" if tls else ""), lambda r: r["connect"]["connect_boot_rate_per_s"], "{:,.0f}", "higher"),
    ("storm", f"reconnect storm: all {n:,} dropped at once, s until all booted again", lambda r: (r.get("storm") or {}).get("time_to_all_booted_s"), "{:.2f}", "lower"),
    ("storm", "reconnect storm: reconnects + boots per s", lambda r: (r["storm"]["dropped"] / r["storm"]["time_to_all_booted_s"]) if (r.get("storm") or {}).get("time_to_all_booted_s") else None, "{:,.0f}", "higher"),
    ("storm", "reconnect storm: failed or refused connects (whole run)", lambda r: r["errors"]["total"], "{:,.0f}", "lower"),
    ("idle", "bytes per idle, booted connection (RSS growth / N after 20 s idle)", lambda r: (r.get("server") or {}).get("bytes_per_connection_end"), "{:,.0f}", "lower"),
    ("large", "bytes per connection after one 60 KiB message each (8,000, after 20 s idle)", lambda r: (r.get("server") or {}).get("bytes_per_connection_end"), "{:,.0f}", "lower"),
    ("saturate", "round trips/s at saturation", lambda r: r["throughput"]["round_trips_per_s"], "{:,.0f}", "higher"),
    ("saturate", "CPU us per round trip at saturation", lambda r: (r.get("server") or {}).get("cpu_us_per_round_trip"), "{:.2f}", "lower"),
    ("saturate", "context switches per round trip at saturation", lambda r: (r.get("server") or {}).get("context_switches_per_round_trip"), "{:.3f}", "lower"),
    ("heartbeat", f"round trip p50 at {n:,}/s (ms)", lambda r: r["latency_us"]["round_trip"]["p50"] / 1000, "{:.2f}", "lower"),
    ("heartbeat", f"round trip p99 at {n:,}/s (ms)", lambda r: r["latency_us"]["round_trip"]["p99"] / 1000, "{:.2f}", "lower"),
    ("heartbeat", f"round trip p99.9 at {n:,}/s (ms)", lambda r: r["latency_us"]["round_trip"]["p999"] / 1000, "{:.2f}", "lower"),
    ("heartbeat", f"CPU us per round trip at {n:,}/s", lambda r: (r.get("server") or {}).get("cpu_us_per_round_trip"), "{:.2f}", "lower"),
    ("heartbeat", f"context switches per round trip at {n:,}/s", lambda r: (r.get("server") or {}).get("context_switches_per_round_trip"), "{:.3f}", "lower"),
]
lines = [
    f"| {n:,} charge points | ocpp-gateway | tokio-ws peer | gateway / peer |",
    "|---|---:|---:|---:|",
]
for scenario, name, pick, fmt, _better in rows:
    g = median(pick(r) for r in reports("gateway", scenario))
    t = median(pick(r) for r in reports("tokio", scenario))
    if g is None and t is None:
        continue
    show = lambda v: "-" if v is None else fmt.format(v)
    ratio = f"{g / t:.2f}" if g is not None and t not in (None, 0) else "-"
    lines.append(f"| {name} | {show(g)} | {show(t)} | {ratio} |")
runs = max(len(reports("gateway", s)) for s in ("idle", "large", "storm", "saturate", "heartbeat"))
lines.append("")
lines.append(f"Medians of {runs} run(s) each, gateway and peer alternating; reports in this directory.")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "compare.md"), "w").write(text)
print(text)
PY
exit "$failed"

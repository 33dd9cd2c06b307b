#!/usr/bin/env bash
# soak.sh: a long run of the `realistic` scenario, watching the gateway for leaks and drift.
#
#   scripts/soak.sh [--minutes M] [--connections N] [--warmup-minutes W] [--max-rss-spread P]
#                   [--out DIR] [--no-build]
#
# Defaults: 19,000 charge points for 30 minutes, the first 5 minutes of the measured phase
# being warm-up, RSS allowed to move 5% after it. One scripts/bench.sh run with the gateway's
# admin listener on a fixed port: ocpp-bench samples the gateway every 10 s (RSS, CPU, open
# files, threads, loop / processor / journal queue depths and the /health status) into the
# report's `samples`, sums up the RSS after the warm-up in `drift`, and fails the run on any
# error or unanswered CALL or when RSS moved more than --max-rss-spread percent.
#
# Output: DIR/soak-N/{report.json,summary.txt,gateway.log,soak-N-ramp.svg,report-soak.svg}.
# Exit status: ocpp-bench's (0 passed, 1 failed, 2 could not run).
set -euo pipefail

minutes=30
connections=19000
warmup_minutes=""
max_spread=5
out=bench/results
build=()
usage() { sed -n '2,15p' "$0"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes="${2:?}"; shift ;;
        --connections) connections="${2:?}"; shift ;;
        --warmup-minutes) warmup_minutes="${2:?}"; shift ;;
        --max-rss-spread) max_spread="${2:?}"; shift ;;
        --out) out="${2:?}"; shift ;;
        --no-build) build=(--no-build) ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ "$minutes" =~ ^[0-9]+$ && "$minutes" -gt 0 ]] || { echo "soak.sh: --minutes must be a positive number" >&2; exit 2; }
# A short soak keeps a sixth of its length as warm-up (5 minutes of 30).
warmup="$((minutes * 10))s"
[[ -z "$warmup_minutes" ]] || warmup="${warmup_minutes}m"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec scripts/bench.sh run "${build[@]}" --scenario realistic --connections "$connections" \
    --duration "${minutes}m" --name "soak-$connections" --out "$out" --admin-port 19190 \
    -- --sample-every 10s --warmup "$warmup" --max-rss-spread "$max_spread" \
    --ramp-timeout 180s

#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each of them, one after the other.
#
#   scripts/fuzz.sh [--runs N | --seconds S] [--sanitizer address|none] [TARGET ...]
#
# Defaults: 10,000,000 executions per target, AddressSanitizer, every target. `.ci/run` uses
# `--seconds 5 --sanitizer none` so the targets keep building and running. Each target's corpus
# grows in fuzz/corpus/TARGET (seeded from fuzz/seeds/TARGET, not committed); a crash leaves its
# input in fuzz/artifacts/TARGET/ and makes this script exit 1. One line per target at the end:
# executions, seconds, executions per second, corpus size, peak RSS.
#
# cargo-fuzz needs nightly-only compiler flags; this uses the installed stable toolchain with
# RUSTC_BOOTSTRAP=1 rather than a second toolchain. Install cargo-fuzz once with
# `cargo install cargo-fuzz --locked`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

runs=10000000
seconds=""
sanitizer=address
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --sanitizer) sanitizer="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown flag $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi

export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -s "$sanitizer"
bin_dir="${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n 's/^host: //p')/release"

if [ -n "$seconds" ]; then
  limit=(-max_total_time="$seconds")
else
  limit=(-runs="$runs")
fi

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
failed=0
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  artifacts="artifacts/$target/"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "seeds/$target" ]; then
    cp -n "seeds/$target"/* "$corpus"/ 2>/dev/null || true
  fi
  log="artifacts/$target.log"
  echo "== $target (${limit[*]})"
  status=0
  "$bin_dir/$target" "$corpus" "${limit[@]}" -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
  units=$(find "$corpus" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "   CRASH (exit $status): see $log and $artifacts" >&2
    tail -30 "$log" >&2
  fi
  printf '%-18s %12s execs %6ss %9s/s corpus %6s peak %5s MB %s\n' "$target" "${execs:-?}" \
    "${took:-?}" "${rate:-?}" "$units" "${rss:-?}" "$([ $status -eq 0 ] && echo ok || echo CRASH)" \
    | tee -a "$summary"
done
echo
echo "== fuzz summary ($sanitizer)"
cat "$summary"
exit "$failed"

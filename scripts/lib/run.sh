# Sourced by the scripts that start servers of their own (failover.sh, cluster-bench.sh), from
# the repository root: start_run NAME OUT BUILD builds (BUILD=1), sets $gateway_bin, $bench_bin,
# $out (made absolute) and $work (a scratch directory), and arranges that every pid added to
# $pids is killed, and $work removed, when the script exits (also on Ctrl-C).
# shellcheck source=scripts/lib/config.sh
source scripts/lib/config.sh
# shellcheck source=scripts/lib/wait.sh
source scripts/lib/wait.sh

pids=()
start_run() {
    local name="$1" build="$3"
    out="$2"
    ((build)) && cargo build --release --workspace
    gateway_bin="$PWD/target/release/ocpp-gateway"
    bench_bin="$PWD/target/release/ocpp-bench"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    work="$(mktemp -d "${TMPDIR:-/tmp}/ocpp-$name.XXXXXX")"
    trap stop_run EXIT
    trap 'exit 130' INT TERM
}
stop_run() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

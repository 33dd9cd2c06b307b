# Sourced by the scripts that start servers of their own (failover.sh, cluster-bench.sh,
# kafka-bench.sh), from
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

# The conventional peer (../shared/peers/tokio-ws), built into
# ${TOKIO_WS_TARGET:-$TMPDIR/tokio-ws-peer-target}: build_peer BUILD sets $peer_bin (building
# when BUILD=1 or it is missing); start_peer PORT starts it, sets $peer_pid.
build_peer() {
    local peer_dir="$PWD/../shared/peers/tokio-ws"
    local peer_target="${TOKIO_WS_TARGET:-${TMPDIR:-/tmp}/tokio-ws-peer-target}"
    peer_bin="$peer_target/release/tokio-ws-peer"
    if (($1)) || [[ ! -x "$peer_bin" ]]; then
        CARGO_TARGET_DIR="$peer_target" cargo build --release --quiet --manifest-path "$peer_dir/Cargo.toml"
    fi
}
start_peer() {
    (cd "$work" && exec "$peer_bin" "$1" --small-buffers) >"$out/peer.log" 2>&1 &
    peer_pid=$!
    pids+=("$peer_pid")
    wait_until 150 grep -q "listening on" "$out/peer.log" || { echo "the peer did not start" >&2; exit 2; }
}
# start_gateway NAME PORT [SECTION.KEY=VALUE ...]: a gateway on the shipped config.toml for
# $connections charge points (loopback, not pinned, no admin listener, no rate limit; the
# settings given override those), run in $work/NAME, logging to $out/NAME.log; sets
# $gateway_pid once it listens. $start_bin and $start_config, when set, replace the binary and
# the config.toml it starts from (an earlier revision reads only its own keys).
start_gateway() {
    local name="$1" port="$2"
    local bin="${start_bin:-$gateway_bin}" base="${start_config:-$PWD/config.toml}"
    shift 2
    mkdir -p "$work/$name"
    config_with "$base" \
        "server.listen=\"127.0.0.1:$port\"" \
        "server.node_id=\"$name\"" \
        "server.pin_cores=false" \
        "server.max_connections=$((connections + 1000))" \
        "admin.listen=\"\"" \
        "ocpp.max_calls_per_second=0" \
        "$@" >"$work/$name/config.toml"
    (cd "$work/$name" && exec "$bin" --config config.toml) >"$out/$name.log" 2>&1 &
    gateway_pid=$!
    pids+=("$gateway_pid")
    wait_until 150 grep -q "listening on" "$out/$name.log" || { echo "$name did not start" >&2; exit 2; }
}

#!/usr/bin/env bash
# bench.sh: one benchmark run, or a sweep of them, of ocpp-gateway on this host.
#
# Builds everything in release mode, writes a bench config (the shipped config.toml with the
# listen address on loopback, max_connections sized to the run, no transaction counter file),
# starts the gateway on it, runs ocpp-bench against it with --server-pid (so the report has the
# gateway's RSS per connection and CPU per phase), stops the gateway, and writes the JSON report,
# the logs and the SVG plots into the output directory. Every process it starts is stopped on
# exit, also on Ctrl-C. Load stays on 127.0.0.0/8.
#
#   scripts/bench.sh [run]  [options] [-- more ocpp-bench flags]   one run
#   scripts/bench.sh sweep  [options] [-- more ocpp-bench flags]   1k, 5k, 10k, 19k: the scaling table
#
# With --server tokio the same run targets ../shared/peers/tokio-ws (the conventional peer,
# small buffers) instead of the gateway, so both are measured with the same tool and flags.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench.sh [run|sweep] [options] [-- more ocpp-bench flags]

  run (default)       one run of --connections charge points
  sweep               one run per size in --sizes, a fresh gateway each, then scaling.md
                      and plots over all of them

Options:
  --connections N     run: charge points (default 1000; at most ~19,900 per process here)
  --sizes "A B ..."   sweep: sizes (default "1000 5000 10000 19000")
  --scenario S        idle | heartbeat | realistic | saturate | storm (default heartbeat)
  --per-cp-rate R     heartbeat: Heartbeats per charge point per second, spread evenly
                      (passed as --rate N*R; default 1; 0 = use ocpp-bench's --interval)
  --duration D        measured phase, e.g. 10s (default 10s)
  --threads T         ocpp-bench threads (default 1)
  --port P            gateway port on 127.0.0.1 (default 18080)
  --set S.KEY=VALUE   a config.toml key for the gateway, TOML as written (repeatable), e.g.
                      --set 'ocpp.state_file=""'
  --admin-port P      admin listener on 127.0.0.1:P, sampled by ocpp-bench (--admin) for
                      queue depths and status (default: an ephemeral port, not sampled)
  --source-ips RANGE  ocpp-bench --source-ips (default 127.0.0.2-127.0.0.9; "" for none)
  --out DIR           output directory (default bench/results)
  --name NAME         run: subdirectory name (default SCENARIO-N); sweep: sweep-SCENARIO
  --tls-resume        with --tls: charge points keep their session tickets and resume with
                      them on reconnect (ocpp-bench --tls-resume; the peer gets --tls-tickets)
  --tls-rsa           with --tls: the server certificate has an RSA-2048 key (made with
                      openssl, signed by the run's CA) instead of ECDSA P-256
  --tls               wss with Basic auth (security profile 2): a test CA and server
                      certificate and a credentials file are made for the run; the peer
                      serves wss with --tls (it ignores the Authorization header)
  --server S          gateway (default) | tokio: the peer in ../shared/peers/tokio-ws
  --peer-dir DIR      where the tokio-ws peer's sources are (default ../shared/peers/tokio-ws)
  --no-build          use the binaries already built
  -h, --help          this help

Output: run -> DIR/NAME/{report.json,summary.txt,gateway.log,*.svg,scaling.md};
        sweep -> DIR/NAME/{N.json,N-summary.txt,N-gateway.log,*.svg,scaling.md}.
Exit status: 0 when every run passed, 1 when one failed, 2 on bad arguments or set-up errors.
EOF
}

die() {
    echo "bench.sh: $*" >&2
    exit 2
}

mode=run
if [[ $# -gt 0 && ( "$1" == run || "$1" == sweep ) ]]; then
    mode="$1"
    shift
fi
connections=1000
sizes="1000 5000 10000 19000"
scenario=heartbeat
per_cp_rate=1
duration=10s
threads=1
port=18080
admin_port=0
sets=()
source_ips="127.0.0.2-127.0.0.9"
out=bench/results
name=""
build=1
server=gateway
peer_dir=""
tls=0
tls_resume=0
tls_rsa=0
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="${2:?}"; shift ;;
        --sizes) sizes="${2:?}"; shift ;;
        --scenario) scenario="${2:?}"; shift ;;
        --per-cp-rate) per_cp_rate="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --threads) threads="${2:?}"; shift ;;
        --port) port="${2:?}"; shift ;;
        --admin-port) admin_port="${2:?}"; shift ;;
        --set) sets+=("${2:?}"); shift ;;
        --source-ips) source_ips="${2?}"; shift ;;
        --out) out="${2:?}"; shift ;;
        --name) name="${2:?}"; shift ;;
        --server) server="${2:?}"; shift ;;
        --peer-dir) peer_dir="${2:?}"; shift ;;
        --no-build) build=0 ;;
        --tls) tls=1 ;;
        --tls-resume) tls_resume=1 ;;
        --tls-rsa) tls_rsa=1 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) usage >&2; die "unknown argument $1" ;;
    esac
    shift
done
[[ "$connections" =~ ^[0-9]+$ ]] || die "--connections must be a number"
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"
[[ "$admin_port" =~ ^[0-9]+$ ]] || die "--admin-port must be a number"
for n in $sizes; do [[ "$n" =~ ^[0-9]+$ ]] || die "--sizes must be numbers"; done
case "$scenario" in idle | heartbeat | realistic | saturate | storm) ;; *) die "unknown scenario $scenario" ;; esac
case "$server" in gateway | tokio) ;; *) die "--server must be gateway or tokio" ;; esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=scripts/lib/config.sh
source "$repo/scripts/lib/config.sh"
# OCPP_GATEWAY_BIN: another build of the gateway to measure (an earlier revision, say);
# OCPP_GATEWAY_CONFIG: the config.toml to start from (that revision's, when it knows fewer keys).
gateway_bin="${OCPP_GATEWAY_BIN:-$repo/target/release/ocpp-gateway}"
base_config="${OCPP_GATEWAY_CONFIG:-$repo/config.toml}"
bench_bin="$repo/target/release/ocpp-bench"
peer_dir="${peer_dir:-$repo/../shared/peers/tokio-ws}"
# Outside the shared tree, which may be read-only (the same place its run.sh uses).
peer_target="${TOKIO_WS_TARGET:-${TMPDIR:-/tmp}/tokio-ws-peer-target}"
peer_bin="$peer_target/release/tokio-ws-peer"

if ((build)); then
    echo "bench.sh: cargo build --release --workspace" >&2
    cargo build --release --workspace
    if [[ "$server" == tokio ]]; then
        [[ -f "$peer_dir/Cargo.toml" ]] || die "no tokio-ws peer in $peer_dir (--peer-dir)"
        echo "bench.sh: building the tokio-ws peer" >&2
        CARGO_TARGET_DIR="$peer_target" cargo build --release --quiet --manifest-path "$peer_dir/Cargo.toml"
    fi
fi
[[ -x "$gateway_bin" && -x "$bench_bin" ]] || die "missing $gateway_bin or $bench_bin (build first)"
[[ "$server" == gateway || -x "$peer_bin" ]] || die "missing $peer_bin (build first)"

work="$(mktemp -d "${TMPDIR:-/tmp}/ocpp-bench.XXXXXX")"
gateway_pid=""

stop_gateway() {
    [[ -n "$gateway_pid" ]] || return 0
    if kill -0 "$gateway_pid" 2>/dev/null; then
        kill -TERM "$gateway_pid" 2>/dev/null || true
        # The gateway drains its connections and exits; give it 20 s, then insist.
        for _ in $(seq 200); do
            kill -0 "$gateway_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$gateway_pid" 2>/dev/null || true
    fi
    wait "$gateway_pid" 2>/dev/null || true
    gateway_pid=""
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    stop_gateway
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The shipped config.toml with the keys a bench run needs overridden (scripts/lib/config.sh).
write_config() {
    local n="$1" file="$2"
    local max=$((n + n / 10 + 1000))
    # A storm reconnects everyone while the old connections may still be closing.
    [[ "$scenario" == storm ]] && max=$((2 * n + 1000))
    local keys=(
        "server.listen=\"127.0.0.1:$port\""
        "server.max_connections=$max"
        'ocpp.transaction_id_file=""'
        "admin.listen=\"127.0.0.1:$admin_port\""
        # The engine is measured, not the per-charge-point rate limit.
        "ocpp.max_calls_per_second=0"
    )
    if ((tls)); then
        keys+=(
            "security.profile=2"
            "security.credentials=\"$work/credentials\""
            "security.tls_cert=\"$work/certs/server.pem\""
            "security.tls_key=\"$work/certs/server.key\""
        )
    fi
    config_with "$base_config" "${keys[@]}" "${sets[@]}" >"$file"
}

# Starts the gateway on config $1 with its log in $2; sets gateway_pid. Waits (at most 15 s)
# for its "listening on" line.
start_gateway() {
    local config="$1" log="$2"
    # In the work directory: relative paths of the config (journal, ...) land there.
    if [[ "$server" == tokio ]]; then
        local tls_args=()
        ((tls)) && tls_args=(--tls "$work/certs/server.pem" "$work/certs/server.key")
        ((tls && tls_resume)) && tls_args+=(--tls-tickets)
        (cd "$work" && exec "$peer_bin" "$port" --small-buffers "${tls_args[@]}") >"$log" 2>&1 &
    else
        (cd "$work" && exec "$gateway_bin" --config "$config") >"$log" 2>&1 &
    fi
    gateway_pid=$!
    for _ in $(seq 150); do
        if grep -q "listening on" "$log" 2>/dev/null; then
            return 0
        fi
        kill -0 "$gateway_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench.sh: the $server server did not start; its log:" >&2
    cat "$log" >&2
    exit 2
}

# rsa_server_certificate DIR: replaces DIR/server.{pem,key} by an RSA-2048 certificate for
# localhost and 127.0.0.1, signed by DIR/ca.{pem,key}.
rsa_server_certificate() {
    local dir="$1"
    command -v openssl >/dev/null || die "--tls-rsa needs openssl"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/server.key" -subj /CN=localhost \
        -out "$dir/server.csr" 2>/dev/null || die "openssl could not make an RSA key"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$dir/san.ext" -out "$dir/server.pem" \
        2>/dev/null || die "openssl could not sign the RSA certificate"
}

# run_one N JSON SUMMARY LOG: one run of N charge points; returns ocpp-bench's exit status.
run_one() {
    local n="$1" json="$2" summary="$3" log="$4"
    local config="$work/config-$n.toml"
    write_config "$n" "$config"
    local url="ws://127.0.0.1:$port/ocpp/" tls_args=()
    if ((tls)); then
        "$bench_bin" certs --out "$work/certs" --connections 0 >/dev/null
        ((tls_rsa)) && rsa_server_certificate "$work/certs"
        "$bench_bin" credentials --seed bench-seed --connections "$n" --out "$work/credentials" >/dev/null
        url="wss://127.0.0.1:$port/ocpp/"
        tls_args=(--ca "$work/certs/ca.pem" --basic-auth bench-seed)
        ((tls_resume)) && tls_args+=(--tls-resume)
    fi
    start_gateway "$config" "$log"
    local args=(--url "$url" "${tls_args[@]}" --connections "$n" --scenario "$scenario"
        --duration "$duration" --threads "$threads" --server-pid "$gateway_pid" --json "$json")
    if [[ "$admin_port" != 0 && "$server" == gateway ]]; then
        args+=(--admin "127.0.0.1:$admin_port")
    fi
    if [[ -n "$source_ips" ]]; then
        args+=(--source-ips "$source_ips")
    fi
    if [[ "$scenario" == heartbeat && "$per_cp_rate" != 0 ]]; then
        args+=(--rate "$(awk -v n="$n" -v r="$per_cp_rate" 'BEGIN { print n * r }')")
    fi
    echo "bench.sh: ocpp-bench ${args[*]} ${extra[*]:-}" >&2
    local status=0
    "$bench_bin" "${args[@]}" "${extra[@]}" | tee "$summary" || status=$?
    stop_gateway
    # The results are kept: they name the run's files, not this machine's temporary directory.
    [[ -f "$log" ]] && sed -i "s#$work#<the run directory>#g" "$log"
    return "$status"
}

failed=0
case "$mode" in
    run)
        dir="$out/${name:-$scenario-$connections}"
        mkdir -p "$dir"
        run_one "$connections" "$dir/report.json" "$dir/summary.txt" "$dir/gateway.log" || failed=1
        [[ -s "$dir/report.json" ]] && "$bench_bin" plot --out "$dir" "$dir/report.json" >/dev/null
        ;;
    sweep)
        dir="$out/${name:-sweep-$scenario}"
        mkdir -p "$dir"
        reports=()
        for n in $sizes; do
            run_one "$n" "$dir/$n.json" "$dir/$n-summary.txt" "$dir/$n-gateway.log" || failed=1
            [[ -s "$dir/$n.json" ]] && reports+=("$dir/$n.json")
        done
        if [[ ${#reports[@]} -gt 0 ]]; then
            "$bench_bin" plot --out "$dir" "${reports[@]}" >/dev/null
            echo
            cat "$dir/scaling.md"
        fi
        ;;
esac
echo "bench.sh: results in $dir" >&2
exit "$failed"

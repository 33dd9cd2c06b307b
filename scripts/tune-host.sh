#!/usr/bin/env bash
# tune-host.sh: the kernel settings and process limits a Linux host needs to hold about a
# million WebSocket connections, as the gateway or as the load generator (ocpp-bench).
#
# By default it only looks (--dry-run): for each setting it prints the current value, the value
# wanted for --connections, and why. With --apply it changes what differs (sysctl -w, needs
# root) and prints what it could not change (read-only /proc/sys in a container, no privileges,
# a module not loaded) instead of failing. Changes made with sysctl -w last until reboot; with
# --persist FILE they are also written to a sysctl.d file. The open-files limit of a process
# cannot be raised from here: the script prints how to set it (ulimit -n, systemd LimitNOFILE=,
# limits.conf).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/tune-host.sh [--dry-run | --apply] [--connections N] [--persist FILE]

  --dry-run         show current and wanted values, change nothing (the default)
  --apply           change what differs with sysctl -w (root); report what could not change
  --connections N   connections to plan for (default 1000000)
  --persist FILE    with --apply, also write the values to FILE
                    (e.g. /etc/sysctl.d/90-ocpp-gateway.conf) so they survive a reboot
  -h, --help        this help

Exit status: 0 when everything is as wanted or was changed, 1 when something still differs
(in --dry-run: something would change), 2 on bad arguments.
EOF
}

mode=dry-run
connections=1000000
persist=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) mode=dry-run ;;
        --apply) mode=apply ;;
        --connections)
            connections="${2:?--connections needs a number}"
            shift
            ;;
        --persist)
            persist="${2:?--persist needs a file}"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "tune-host.sh: unknown argument $1" >&2
            usage >&2
            exit 2
            ;;
    esac
    shift
done
if ! [[ "$connections" =~ ^[0-9]+$ ]] || ((connections < 1000)); then
    echo "tune-host.sh: --connections must be a number >= 1000" >&2
    exit 2
fi

# Open files: one per connection plus a margin, for the gateway and a load generator on the
# same host (each process has its own RLIMIT_NOFILE; fs.file-max counts them all).
per_process=$((connections + connections / 10 + 1024))
system_files=$((2 * per_process + 65536))
# tcp_mem is in pages: about 4 KiB of socket buffers per busy connection at pressure, twice
# that before the kernel refuses memory. Idle OCPP connections need far less.
page=$(getconf PAGESIZE 2>/dev/null || echo 4096)
tcp_pressure=$((connections * 4096 / page))
tcp_low=$((tcp_pressure * 3 / 4))
tcp_high=$((tcp_pressure * 2))

differs=0
pending=()

# Current value of a sysctl with whitespace normalised, or "absent".
current() {
    local path="/proc/sys/${1//./\/}"
    if [[ -r "$path" ]]; then
        tr -s ' \t' ' ' <"$path" | sed 's/ *$//'
    else
        echo absent
    fi
}

# Is current value $2 good enough for wanted $3 under policy $1?
#   at-least: every number of current >= the same number of wanted
#   at-most-default: the middle number (the default buffer) <= wanted's middle, max >= wanted's max
#   range: current low <= wanted low and current high >= wanted high
#   exact: the same text
good_enough() {
    local policy="$1" cur="$2" want="$3"
    local -a c w
    read -r -a c <<<"$cur"
    read -r -a w <<<"$want"
    case "$policy" in
        at-least)
            ((${#c[@]} == ${#w[@]})) || return 1
            for i in "${!w[@]}"; do
                [[ "${c[$i]}" =~ ^[0-9]+$ ]] || return 1
                ((c[i] >= w[i])) || return 1
            done
            ;;
        at-most-default)
            ((${#c[@]} == 3)) || return 1
            ((c[1] <= w[1] && c[2] >= w[2])) || return 1
            ;;
        range)
            ((${#c[@]} == 2)) || return 1
            ((c[0] <= w[0] && c[1] >= w[1])) || return 1
            ;;
        exact) [[ "$cur" == "$want" ]] || return 1 ;;
    esac
}

# setting KEY WANTED POLICY WHY
setting() {
    local key="$1" want="$2" policy="$3" why="$4" cur status
    cur=$(current "$key")
    if [[ "$cur" == absent ]]; then
        status="absent (nothing to tune: not in this kernel or its module is not loaded)"
    elif good_enough "$policy" "$cur" "$want"; then
        status=ok
    elif [[ "$mode" == apply ]]; then
        local out
        if out=$(sysctl -q -w "$key=$want" 2>&1) && good_enough "$policy" "$(current "$key")" "$want"; then
            status="changed"
            pending+=("$key = $want")
        else
            status="COULD NOT CHANGE: ${out:-value did not stick} (container or no privileges?)"
            differs=1
        fi
    else
        status="would change"
        differs=1
    fi
    printf '%-34s current: %-28s wanted: %-28s %s\n' "$key" "$cur" "$want" "$status"
    printf '    %s\n' "$why"
}

echo "# host tuning for $connections connections ($mode)"
setting fs.nr_open "$per_process" at-least \
    "Ceiling for any process's open-files limit (RLIMIT_NOFILE): one descriptor per connection."
setting fs.file-max "$system_files" at-least \
    "Open files across the whole host: gateway and load generator together."
setting net.ipv4.ip_local_port_range "1024 65535" range \
    "Ephemeral ports per source address for outgoing connections (the load generator; use --source-ips for more)."
setting net.ipv4.tcp_tw_reuse 1 exact \
    "Let new outgoing connections reuse TIME_WAIT ports: reconnect storms from one client host."
setting net.core.somaxconn 65535 at-least \
    "Cap on each listen backlog (server.listen_backlog is clamped to it): absorbs connect bursts."
setting net.ipv4.tcp_max_syn_backlog 65535 at-least \
    "Half-open connections queued per listener during a reconnect storm."
setting net.core.netdev_max_backlog 65536 at-least \
    "Packets queued per CPU before the stack drops them during bursts."
setting net.ipv4.tcp_mem "$tcp_low $tcp_pressure $tcp_high" at-least \
    "TCP buffer memory for all sockets, in pages (low, pressure, high): room for every connection."
setting net.ipv4.tcp_rmem "4096 8192 6291456" at-most-default \
    "Per-socket receive buffer (min, default, max): a small default keeps a million idle sockets cheap."
setting net.ipv4.tcp_wmem "4096 8192 4194304" at-most-default \
    "Per-socket send buffer (min, default, max): same reason; busy sockets still grow to max."
setting net.netfilter.nf_conntrack_max "$((2 * connections))" at-least \
    "Connection tracking entries (only when netfilter conntrack is loaded): full table = dropped SYNs."

soft=$(ulimit -Sn)
hard=$(ulimit -Hn)
echo
echo "# open files per process (RLIMIT_NOFILE): this shell has soft $soft, hard $hard; wanted $per_process"
if [[ "$hard" != unlimited ]] && ((hard < per_process)); then
    differs=1
    cat <<EOF
    Not enough for $connections connections in one process. The gateway and ocpp-bench raise
    their soft limit to the hard limit themselves; raise the hard limit where they start:
      systemd unit:        LimitNOFILE=$per_process
      /etc/security/limits.conf:  *  -  nofile  $per_process   (new login sessions)
      a root shell:        ulimit -Hn $per_process && ulimit -Sn $per_process
    (fs.nr_open above must be at least as large.) Inside a container the limit comes from the
    runtime (docker run --ulimit nofile=$per_process:$per_process). Until then, split the load
    generator over several processes of at most $((hard - 100)) connections each.
EOF
else
    echo "    ok"
fi

if [[ "$mode" == apply && -n "$persist" && ${#pending[@]} -gt 0 ]]; then
    if {
        echo "# written by scripts/tune-host.sh for $connections connections"
        printf '%s\n' "${pending[@]}"
    } >"$persist" 2>/dev/null; then
        echo
        echo "# wrote ${#pending[@]} setting(s) to $persist"
    else
        echo
        echo "# COULD NOT WRITE $persist (no privileges?); the changes last until reboot"
        differs=1
    fi
fi
if [[ "$mode" == dry-run && $differs -ne 0 ]]; then
    echo
    echo "# run with --apply (as root) to change the sysctls above"
fi
exit "$differs"

# Sourced by the scripts: wait_until TENTHS COMMAND [ARGS...] runs COMMAND every tenth of a
# second until it succeeds (status 0) or TENTHS tries have failed (status 1).
wait_until() {
    local tenths="$1"
    shift
    for _ in $(seq "$tenths"); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    return 1
}

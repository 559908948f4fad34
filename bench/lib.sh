# Shared helpers of the bench/*.sh scripts; sourced, not run. A script sets WORK (its scratch
# dir), KEEP (1 keeps WORK), and lists in CLEANUP_PIDS / CLEANUP_LOGS the *names* of the
# variables holding the processes to stop and the logs to show if it fails; then it installs
# `trap bench_cleanup EXIT`.

# Prints the script's header comment (everything from line 2 up to `set -euo pipefail`).
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

log() { echo "== $*" >&2; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# SIGTERM, then SIGKILL if the process has not gone within 15 s.
stop_pid() {
    local pid=$1
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

# The EXIT trap: stops what still runs, shows the logs' last lines on failure, and removes
# WORK unless asked to keep it (or the run failed, so its data can be looked at).
bench_cleanup() {
    local status=$? name
    for name in "${CLEANUP_PIDS[@]}"; do stop_pid "${!name:-}"; done
    if [ "$status" -ne 0 ]; then
        for name in "${CLEANUP_LOGS[@]}"; do
            local file=${!name:-}
            if [ -n "$file" ] && [ -s "$file" ]; then
                echo "--- last lines of $file ---" >&2
                tail -n 30 "$file" >&2
            fi
        done
    fi
    if [ "${KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then
        echo "kept $WORK (data, logs, results)" >&2
    else
        rm -rf "$WORK"
    fi
}

# build_release BINARY...: unless BUILD=0, builds each binary's package (the binary's file
# name: rill, rill-bench, rill-agent) in release mode; then checks every binary exists.
build_release() {
    local bin packages=()
    for bin in "$@"; do packages+=(-p "$(basename "$bin")"); done
    if [ "${BUILD:-1}" = 1 ]; then
        log "building $(for bin in "$@"; do basename "$bin"; done | paste -sd, -) (release)"
        cargo build --release "${packages[@]}"
    fi
    for bin in "$@"; do
        [ -x "$bin" ] || die "$bin is missing (build it, or drop --no-build)"
    done
}

# start_rill_broker DATA_DIR [more `rill broker` args]: starts "$RILL" broker on a free loopback
# port, logging to $BROKER_LOG; once it accepts, PORT, BROKERS and BROKER_PID are set.
# Ports are picked below the kernel's range for outgoing connections (which a busy machine's
# clients hold, in TIME_WAIT too, and a connect test cannot see), and a port taken between the
# test and the bind is retried with another.
start_rill_broker() {
    local data=$1 candidate attempt low
    shift
    low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 11000 ] || low=32768
    mkdir -p "$data"
    for attempt in 1 2 3 4 5; do
        PORT=""
        for _ in $(seq 100); do
            candidate=$((10000 + RANDOM % (low - 10000)))
            if ! port_in_use "$candidate"; then PORT=$candidate; break; fi
        done
        [ -n "$PORT" ] || die "found no free port"
        BROKERS="127.0.0.1:$PORT"
        log "starting $RILL broker --listen $BROKERS --data-dir $data $*"
        "$RILL" broker --listen "$BROKERS" --data-dir "$data" "$@" >"$BROKER_LOG" 2>&1 &
        BROKER_PID=$!
        for _ in $(seq 300); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            port_in_use "$PORT" && break
            sleep 0.1
        done
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            wait "$BROKER_PID" 2>/dev/null || true
            if grep -q "already in use" "$BROKER_LOG" && [ "$attempt" -lt 5 ]; then
                log "port $PORT was taken meanwhile; trying another"
                continue
            fi
            die "the broker exited during start-up"
        fi
        break
    done
    port_in_use "$PORT" || die "the broker did not accept connections on $BROKERS within 30 s"
    log "broker pid $BROKER_PID is up on $BROKERS"
}

#!/usr/bin/env bash
# The rill consumer-group benchmark (issue 3): one command, run from anywhere in the repo.
#
#   bench/groups.sh [--runs N] [--delays LIST] [--assignor NAME] [--seconds S]
#                   [--connections LIST] [--commit-runs N] [--no-build] [--keep]
#
# It builds release binaries, then for each initial rebalance delay in DELAYS (default 3000,0:
# Kafka's default group.initial.rebalance.delay.ms, and none) starts a release broker on a free
# loopback port with a config file setting [broker.groups] initial_rebalance_delay_ms, and times
# RUNS rebalances of a MEMBERS-member group on a PARTITIONS-partition topic (all subscribe ->
# all assigned, an even split checked). Against the first broker it also measures OffsetCommit
# throughput for each committer count in CONNECTIONS (COMMIT_RUNS runs of COMMIT_SECONDS each). It ends
# with a Markdown table of medians against the targets.
#
# Every option can also come from the environment: RUNS, DELAYS, ASSIGNOR (range, roundrobin,
# cooperative-sticky), MEMBERS, PARTITIONS, COMMIT_SECONDS, CONNECTIONS (comma-separated), COMMIT_RUNS.
# BENCH_TMPDIR picks where the data dir goes (default $TMPDIR or /tmp); committed offsets are
# written there.
#
# Exit status is non-zero only when something failed (build, broker start, a group that never
# settled or split unevenly, a commit that was refused or lost); missed targets are printed as
# MISSED.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-10}
DELAYS=${DELAYS:-3000,0}
ASSIGNOR=${ASSIGNOR:-range}
MEMBERS=${MEMBERS:-4}
PARTITIONS=${PARTITIONS:-16}
SECONDS_PER_RUN=${COMMIT_SECONDS:-5}
CONNECTIONS=${CONNECTIONS:-1,4,16}
COMMIT_RUNS=${COMMIT_RUNS:-3}
BUILD=1
KEEP=0



while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --delays) DELAYS=${2:?--delays needs a value}; shift 2 ;;
        --assignor) ASSIGNOR=${2:?--assignor needs a value}; shift 2 ;;
        --seconds) SECONDS_PER_RUN=${2:?--seconds needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --commit-runs) COMMIT_RUNS=${2:?--commit-runs needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_count "$RUNS" || die "RUNS must be a positive integer, got '$RUNS'"
is_count "$MEMBERS" || die "MEMBERS must be a positive integer, got '$MEMBERS'"
is_count "$PARTITIONS" || die "PARTITIONS must be a positive integer, got '$PARTITIONS'"
is_count "$SECONDS_PER_RUN" || die "COMMIT_SECONDS must be a positive integer, got '$SECONDS_PER_RUN'"
# 0 commit runs skips the commit benchmark.
[[ "$COMMIT_RUNS" =~ ^[0-9]+$ ]] || die "COMMIT_RUNS must be a non-negative integer, got '$COMMIT_RUNS'"
DELAY_LIST=${DELAYS//,/ }
[ -n "$DELAY_LIST" ] || die "DELAYS is empty"
for d in $DELAY_LIST; do
    [[ "$d" =~ ^(0|[1-9][0-9]*)$ ]] || die "DELAYS must be comma-separated milliseconds, got '$DELAYS'"
done
CONNECTION_LIST=${CONNECTIONS//,/ }
for n in $CONNECTION_LIST; do
    is_count "$n" || die "CONNECTIONS must be a comma-separated list of positive integers, got '$CONNECTIONS'"
done
case "$ASSIGNOR" in range | roundrobin | cooperative-sticky) ;;
    *) die "ASSIGNOR must be range, roundrobin or cooperative-sticky, got '$ASSIGNOR'" ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RILL="$TARGET_DIR/release/rill"
BENCH="$TARGET_DIR/release/rill-bench"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rill-groups-bench.XXXXXX")
RESULTS="$WORK/results.jsonl"
BROKER_PID=""
BROKER_LOG=""

stop_broker() {
    # SIGTERM, as an operator would; SIGKILL only if it hangs, so a stuck shutdown shows up as
    # an error rather than a hung benchmark.
    [ -n "$BROKER_PID" ] || return 0
    local code=0 t0 t1
    t0=$(date +%s.%N)
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
        die "the broker did not stop within 10 s of SIGTERM"
    fi
    wait "$BROKER_PID" || code=$?
    t1=$(date +%s.%N)
    BROKER_PID=""
    STOPPED+=("$(awk -v a="$t0" -v b="$t1" -v c="$code" -v d="$1" \
        'BEGIN { printf "broker (delay %s ms) stopped %.2f s after SIGTERM, exit status %d", d, b - a, c }')")
    [ "$code" = 0 ] || die "the broker exited with status $code after SIGTERM (log: $BROKER_LOG)"
}

CLEANUP_PIDS=(BROKER_PID)
CLEANUP_LOGS=(BROKER_LOG)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM


# --- 1. build -------------------------------------------------------------------------------
build_release "$RILL" "$BENCH"

# --- 2. one broker per initial rebalance delay ------------------------------------------------

# start_broker DELAY_MS: a fresh data dir and a config file with that delay, on a free port.
start_broker() {
    local delay=$1 dir="$WORK/delay-$1"
    mkdir -p "$dir/data"
    # Only the key under test; everything else keeps rill's defaults (flush every 1000 ms).
    cat >"$dir/rill.toml" <<EOF
[broker.groups]
initial_rebalance_delay_ms = $delay
EOF
    BROKER_LOG="$dir/broker.log"
    start_rill_broker "$dir/data" --config "$dir/rill.toml"
}

: >"$RESULTS"
STOPPED=()
STAMP=$(date +%s)
first=1
for delay in $DELAY_LIST; do
    start_broker "$delay"
    # rill-bench creates the topics itself (CreateTopics, then waits for every leader), so
    # broker-side auto-creation and its default partition count never come into it.
    topic="groups-$STAMP-d$delay"
    log "rebalance: $RUNS runs, $MEMBERS members, $PARTITIONS partitions, $ASSIGNOR, delay $delay ms"
    "$BENCH" rebalance --brokers "$BROKERS" --topic "$topic" --partitions "$PARTITIONS" \
        --members "$MEMBERS" --runs "$RUNS" --assignor "$ASSIGNOR" --join-delay-ms "$delay" \
        | tee -a "$RESULTS"
    # The commit path does not depend on the join delay: measure it once, on the first broker.
    if [ "$first" = 1 ]; then
        for n in $CONNECTION_LIST; do
            for run in $(seq "$COMMIT_RUNS"); do
                log "commits: run $run/$COMMIT_RUNS, $n committer(s), $SECONDS_PER_RUN s"
                "$BENCH" commits --brokers "$BROKERS" --topic "commits-$STAMP" \
                    --partitions "$PARTITIONS" --group "commits-$STAMP-n$n-r$run" \
                    --seconds "$SECONDS_PER_RUN" --connections "$n" --broker-pid "$BROKER_PID" \
                    | tee -a "$RESULTS"
            done
        done
        OFFSETS_LOG_BYTES=$(stat -c %s "$WORK/delay-$delay/data/groups/offsets.log" 2>/dev/null || echo "")
    fi
    first=0
    stop_broker "$delay"
done

# --- 3. table -----------------------------------------------------------------------------------
REPORT=$("$BENCH" report --input "$RESULTS" --label rill)
FSTYPE=$(stat -f -c %T "$WORK")

cat <<EOF

## Consumer-group benchmark

Command: \`RUNS=$RUNS DELAYS=$DELAYS ASSIGNOR=$ASSIGNOR MEMBERS=$MEMBERS PARTITIONS=$PARTITIONS COMMIT_SECONDS=$SECONDS_PER_RUN CONNECTIONS=$CONNECTIONS COMMIT_RUNS=$COMMIT_RUNS bench/groups.sh\`
Machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); data on $FSTYPE
Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')
Clients: librdkafka (rdkafka-sys $(awk '/^name = "rdkafka-sys"/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)), session.timeout.ms 6000, heartbeat.interval.ms 500, $ASSIGNOR assignor; rebalance timed from the last subscribe() to the last member holding its final share.

$REPORT
EOF
if [ -n "${OFFSETS_LOG_BYTES:-}" ]; then
    echo "Offset log after the commit runs: $(awk -v b="$OFFSETS_LOG_BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }') (compacted when stale entries pile up)"
fi
for line in "${STOPPED[@]}"; do echo "$line"; done

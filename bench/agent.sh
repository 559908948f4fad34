#!/usr/bin/env bash
# The rill-agent benchmark (issue 4): one command, run from anywhere in the repo.
#
#   bench/agent.sh [--runs N] [--librdkafka-runs N] [--bytes N] [--idle-secs N]
#                  [--latency-secs N] [--rate N] [--no-build] [--keep]
#
# It builds release binaries (rill, rill-agent, rill-bench), starts a release `rill broker` on a
# free loopback port with a temporary data dir, and measures:
#   1. throughput, RUNS times, each with a fresh agent: BYTES of 100-byte lines appended to a
#      tailed file as fast as one writer can; timed from the first append until the topic's end
#      offset (ListOffsets) counts every line, i.e. every line acknowledged by the broker. The
#      agent's peak RSS (VmHWM) under that load is read at the end, and the CPU seconds of
#      the agent, the broker and the writer over the run. The agent uses its default
#      producer (rill's own, for this plaintext broker); then LIBRDKAFKA_RUNS more runs use
#      the librdkafka producer (RILL_AGENT_PRODUCER=librdkafka: the TLS/SASL path) for the
#      reference rows.
#   2. idle cost: a fresh agent watching 100 files with 10 s metrics, after a 10 s warm-up:
#      CPU % of one core and RSS over IDLE_SECS.
#   3. latency: the same agent; one of its files gets RATE time-stamped lines a second (one
#      write each) for LATENCY_SECS while a consumer reads the topic; append → received p99.
# It ends with a Markdown table (medians where repeated) against the targets.
#
# Options also come from the environment: RUNS, LIBRDKAFKA_RUNS (default 1; 0 skips them),
# BYTES, IDLE_SECS, LATENCY_SECS, RATE.
# BENCH_TMPDIR picks where the data goes (default $TMPDIR or /tmp). Use
# CARGO_TARGET_DIR to pick the build directory.
#
# Exit status is non-zero only when something failed (build, start-up, lines not arriving);
# missed targets are printed as MISSED.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
LIBRDKAFKA_RUNS=${LIBRDKAFKA_RUNS:-1}
BYTES=${BYTES:-1000000000}
IDLE_SECS=${IDLE_SECS:-30}
LATENCY_SECS=${LATENCY_SECS:-15}
RATE=${RATE:-200}
BUILD=1
KEEP=0



while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --librdkafka-runs) LIBRDKAFKA_RUNS=${2:?--librdkafka-runs needs a value}; shift 2 ;;
        --bytes) BYTES=${2:?--bytes needs a value}; shift 2 ;;
        --idle-secs) IDLE_SECS=${2:?--idle-secs needs a value}; shift 2 ;;
        --latency-secs) LATENCY_SECS=${2:?--latency-secs needs a value}; shift 2 ;;
        --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

for v in RUNS BYTES IDLE_SECS LATENCY_SECS RATE; do
    is_count "${!v}" || die "$v must be a positive integer, got '${!v}'"
done
[[ "$LIBRDKAFKA_RUNS" =~ ^[0-9]+$ ]] || die "LIBRDKAFKA_RUNS must be a count, got '$LIBRDKAFKA_RUNS'"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RILL="$TARGET_DIR/release/rill"
AGENT="$TARGET_DIR/release/rill-agent"
BENCH="$TARGET_DIR/release/rill-bench"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rill-agent-bench.XXXXXX")
RESULTS="$WORK/results.jsonl"
BROKER_LOG="$WORK/broker.log"
BROKER_PID=""
AGENT_PID=""
AGENT_LOG=""


CLEANUP_PIDS=(AGENT_PID BROKER_PID)
CLEANUP_LOGS=(AGENT_LOG BROKER_LOG)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM


# --- build ------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    log "building rill, rill-agent and rill-bench (release)"
    cargo build --release -p rill -p rill-agent -p rill-bench
fi
for b in "$RILL" "$AGENT" "$BENCH"; do
    [ -x "$b" ] || die "$b is missing (build it, or drop --no-build)"
done

# --- broker -----------------------------------------------------------------------------------
start_rill_broker "$WORK/broker"

# start_agent NAME TOPIC: an agent tailing $WORK/NAME/logs/*.log into TOPIC, metrics every 10 s.
start_agent() {
    local dir="$WORK/$1"
    mkdir -p "$dir/logs" "$dir/data"
    cat >"$dir/agent.toml" <<EOF
brokers = "$BROKERS"
host = "bench"
data_dir = "$dir/data"

[[files]]
include = ["$dir/logs/*.log"]
read_from = "beginning"
topic = "$2"

[metrics]
interval_ms = 10000
EOF
    AGENT_LOG="$dir/agent.log"
    RUST_LOG=${RUST_LOG:-warn,rill_agent=info} "$AGENT" --config "$dir/agent.toml" >"$AGENT_LOG" 2>&1 &
    AGENT_PID=$!
    local want=$3
    for _ in $(seq 100); do
        kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited during start-up"
        [ "$(grep -c 'tailing file' "$AGENT_LOG" || true)" -ge "$want" ] && return 0
        sleep 0.1
    done
    die "the agent did not start tailing $want file(s) within 10 s"
}

: >"$RESULTS"
STAMP=$(date +%s)

# --- 1. throughput ----------------------------------------------------------------------------
# throughput_run NAME PRODUCER: one run with a fresh agent using PRODUCER (rill, librdkafka).
throughput_run() {
    local name=$1 producer=$2
    local topic="agentbench-$STAMP-$name"
    mkdir -p "$WORK/$name/logs"
    : >"$WORK/$name/logs/app.log"
    if [ "$producer" = librdkafka ]; then
        RILL_AGENT_PRODUCER=librdkafka start_agent "$name" "$topic" 1
    else
        start_agent "$name" "$topic" 1
    fi
    log "throughput $name ($producer producer): $BYTES bytes of 100-byte lines -> $topic (agent pid $AGENT_PID)"
    "$BENCH" agent throughput --brokers "$BROKERS" --topic "$topic" \
        --file "$WORK/$name/logs/app.log" --bytes "$BYTES" --agent-pid "$AGENT_PID" \
        --broker-pid "$BROKER_PID" --producer "$producer" \
        | tee -a "$RESULTS"
    stop_pid "$AGENT_PID"
    AGENT_PID=""
    # The file and the topic are done with; keep the disk free for the next run.
    rm -f "$WORK/$name/logs/app.log"
}
for run in $(seq "$RUNS"); do
    throughput_run "tp$run" rill
done
for run in $(seq "$LIBRDKAFKA_RUNS"); do
    throughput_run "rdkafka$run" librdkafka
done

# --- 2. idle, 3. latency ----------------------------------------------------------------------
name="idle"
topic="agentbench-$STAMP-idle"
mkdir -p "$WORK/$name/logs"
for i in $(seq 99); do
    printf '2024-05-01T12:00:00Z INFO file %d ready\n' "$i" >"$WORK/$name/logs/f$i.log"
done
: >"$WORK/$name/logs/latency.log"
start_agent "$name" "$topic" 100
log "idle: warming up 10 s, then watching the agent (pid $AGENT_PID) for $IDLE_SECS s"
sleep 10
"$BENCH" agent idle --agent-pid "$AGENT_PID" --seconds "$IDLE_SECS" --files 100 | tee -a "$RESULTS"
log "latency: $RATE lines/s for $LATENCY_SECS s -> $topic"
"$BENCH" agent latency --brokers "$BROKERS" --topic "$topic" \
    --file "$WORK/$name/logs/latency.log" --rate "$RATE" --seconds "$LATENCY_SECS" \
    | tee -a "$RESULTS"
stop_pid "$AGENT_PID"
AGENT_PID=""

REPORT=$("$BENCH" agent report --input "$RESULTS")
cat <<EOF

## rill-agent benchmark

Command: \`RUNS=$RUNS LIBRDKAFKA_RUNS=$LIBRDKAFKA_RUNS BYTES=$BYTES IDLE_SECS=$IDLE_SECS LATENCY_SECS=$LATENCY_SECS RATE=$RATE bench/agent.sh\`
Load: $(uptime | sed 's/.*load average/load average/') at the end
Machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); broker and agent on the same machine
Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')

$REPORT
EOF

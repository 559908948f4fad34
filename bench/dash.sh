#!/usr/bin/env bash
# The dashboard benchmark (issue 5): `rill dash` in a tmux pane while RATE records/s of
# record-contract log lines flow into `logs`, for DURATION seconds.
#
#   bench/dash.sh [--rate N] [--seconds N] [--no-build] [--keep]
#
# It builds release binaries, starts a release broker on a free loopback port and the
# dashboard (120x40) with RILL_DASH_STATS pointing at a file, in which the dashboard records
# its own frame draw times, key-to-frame times and, every second, the records/s its status bar
# shows. `rill-bench logs` produces at RATE; a key (2, then 1: a full view switch) is sent
# every second. Every 5 s the script samples the dashboard's RSS and CPU time from /proc.
# The baseline, measured in the same run: `kcat -C` following the same topic (a bare consumer
# doing no decoding and no drawing), its CPU next to the dashboard's.
#
# It prints: produced vs displayed records/s (medians over the steady part, after the first
# 30 s), frame draw time p50/p99, key-to-frame p50/p99, CPU (cores) of the dashboard and of
# kcat, and RSS at 30 s, at the middle and at the end (flat = the ring is full and nothing
# else grows). Targets: displayed ≈ produced, frame p99 <= 16 ms, key <= 50 ms, CPU <= 1 core,
# RSS flat. Environment: RATE, DURATION (seconds), KEEP=1; RILL and RILL_BENCH to use given binaries.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-100000}
SECONDS_TOTAL=${DURATION:-300}
BUILD=1
KEEP=${KEEP:-0}
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
        --seconds) SECONDS_TOTAL=${2:?--seconds needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
is_count "$RATE" || die "RATE must be a positive integer, got '$RATE'"
is_count "$SECONDS_TOTAL" || die "SECONDS must be a positive integer, got '$SECONDS_TOTAL'"
((SECONDS_TOTAL >= 60)) || die "SECONDS must be at least 60 (the first 30 s are warm-up)"
for tool in tmux kcat python3; do command -v "$tool" >/dev/null || die "$tool is not installed"; done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -q -p rill -p rill-bench)
fi
RILL=${RILL:-$TARGET/release/rill}
RILL_BENCH=${RILL_BENCH:-$TARGET/release/rill-bench}

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rill-dash-bench.XXXXXX")
BROKER_LOG=$WORK/broker.log
PRODUCER_LOG=$WORK/producer.log
SOCK=$WORK/tmux.sock
BROKER_PID=
PRODUCER_PID=
KCAT_PID=
CLEANUP_PIDS=(PRODUCER_PID KCAT_PID BROKER_PID)
CLEANUP_LOGS=(BROKER_LOG PRODUCER_LOG)
cleanup() {
    tmux -S "$SOCK" kill-server 2>/dev/null || true
    bench_cleanup
}
trap cleanup EXIT
t() { tmux -S "$SOCK" -f /dev/null "$@"; }

start_rill_broker "$WORK/data"
"$RILL" topics create logs --partitions 3 --brokers "$BROKERS" >/dev/null

STATS=$WORK/dash-stats
t new-session -d -s dash -x 120 -y 40 \
    "exec env RILL_DASH_STATS=$STATS $RILL dash --brokers $BROKERS"
DASH_PID=$(t display-message -p -t dash '#{pane_pid}')
log "dashboard pid $DASH_PID; producing $RATE records/s for $SECONDS_TOTAL s"
kcat -C -b "$BROKERS" -t logs -o end -q >/dev/null 2>&1 &
KCAT_PID=$!

"$RILL_BENCH" logs --brokers "$BROKERS" --topic logs --rate "$RATE" --seconds "$SECONDS_TOTAL" \
    >"$WORK/producer.json" 2>"$PRODUCER_LOG" &
PRODUCER_PID=$!

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
TICKS=$(getconf CLK_TCK)
SAMPLES=$WORK/samples # elapsed_s rss_kib dash_ticks kcat_ticks
START=$(date +%s.%N)
next_sample=0
key=2
while kill -0 "$PRODUCER_PID" 2>/dev/null; do
    kill -0 "$DASH_PID" 2>/dev/null || die "the dashboard exited during the run"
    now=$(date +%s.%N)
    elapsed=$(awk -v a="$START" -v b="$now" 'BEGIN {printf "%d", b - a}')
    if ((elapsed >= next_sample)); then
        echo "$elapsed $(rss_kib "$DASH_PID") $(cpu_ticks "$DASH_PID") $(cpu_ticks "$KCAT_PID")" >>"$SAMPLES"
        next_sample=$((next_sample + 5))
    fi
    t send-keys -t dash "$key"
    if [ "$key" = 2 ]; then key=1; else key=2; fi
    sleep 1
done
wait "$PRODUCER_PID" || die "the producer failed"
PRODUCER_PID=
sleep 3 # the dashboard's last stats line then counts everything it got
t send-keys -t dash q
sleep 1

python3 - "$WORK/producer.json" "$STATS" "$SAMPLES" "$TICKS" <<'PY'
import json, statistics, sys
produced = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
frames, keys, rates, received = [], [], [], 0
for line in open(sys.argv[2]):
    kind, _, value = line.partition(" ")
    if kind == "frame": frames.append(int(value) / 1000)
    elif kind == "key": keys.append(int(value) / 1000)
    elif kind == "rate": rates.append(float(value))
    elif kind == "records": received = int(value)
samples = [list(map(float, l.split())) for l in open(sys.argv[3]) if l.strip()]
ticks = float(sys.argv[4])
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
steady = rates[30:-2] if len(rates) > 40 else rates
warm = [s for s in samples if s[0] >= 30]
span = warm[-1][0] - warm[0][0]
dash_cpu = (warm[-1][2] - warm[0][2]) / ticks / span
kcat_cpu = (warm[-1][3] - warm[0][3]) / ticks / span
mid = warm[len(warm) // 2]
print()
print("| metric | rill dash | target |")
print("|---|---:|---:|")
print(f"| records/s produced / displayed (median) | {produced['records_per_sec']:,.0f} / {statistics.median(steady):,.0f} | equal |")
print(f"| records produced / received by the dashboard | {produced['records']:,} / {received:,} | equal |")
print(f"| frame draw p50 / p99 ({len(frames)} frames) | {pct(frames, 50):.2f} / {pct(frames, 99):.2f} ms | p99 <= 16 ms |")
print(f"| key to frame p50 / p99 ({len(keys)} keys) | {pct(keys, 50):.2f} / {pct(keys, 99):.2f} ms | <= 50 ms |")
print(f"| CPU, dashboard / kcat -C baseline | {dash_cpu:.2f} / {kcat_cpu:.2f} cores | <= 1 core |")
print(f"| RSS at {warm[0][0]:.0f} s / {mid[0]:.0f} s / {warm[-1][0]:.0f} s | {warm[0][1]/1024:.1f} / {mid[1]/1024:.1f} / {warm[-1][1]/1024:.1f} MiB | flat |")
print()
print("RSS over time (s MiB):", " ".join(f"{s[0]:.0f}:{s[1]/1024:.0f}" for s in samples))
PY
uptime

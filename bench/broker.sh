#!/usr/bin/env bash
# The rill broker benchmark (issue 2): one command, run from anywhere in the repo.
#
#   bench/broker.sh [--runs N] [--records N] [--record-bytes N] [--partitions LIST]
#                   [--acks all|1|0] [--against HOST:PORT] [--no-build] [--keep]
#
# It builds release binaries, measures the disk's sequential write speed next to the broker's
# data dir (the ceiling for durable produce), starts a release broker on a free loopback port,
# then for each partition count and run: produces RECORDS records of RECORD_BYTES bytes with
# acks=all through librdkafka into a fresh topic and reads them all back. It ends with a Markdown
# table of medians against the targets and the broker's peak RSS and CPU seconds.
#
# Every option can also come from the environment: RECORDS, RECORD_BYTES, RUNS, PARTITIONS
# (comma-separated, e.g. 1,3), ACKS, AGAINST. BENCH_TMPDIR picks where the data dir goes
# (default $TMPDIR or /tmp); put it on the disk you mean to measure.
#
# Exit status is non-zero only when something failed (build, broker start, a lost record);
# missed targets are printed as MISSED, because a benchmark that "fails" on a noisy machine
# would teach people to ignore it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RECORDS=${RECORDS:-1000000}
RECORD_BYTES=${RECORD_BYTES:-100}
RUNS=${RUNS:-3}
PARTITIONS=${PARTITIONS:-1}
ACKS=${ACKS:-all}
AGAINST=${AGAINST:-}
BUILD=1
KEEP=0



while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --records) RECORDS=${2:?--records needs a value}; shift 2 ;;
        --record-bytes) RECORD_BYTES=${2:?--record-bytes needs a value}; shift 2 ;;
        --partitions) PARTITIONS=${2:?--partitions needs a value}; shift 2 ;;
        --acks) ACKS=${2:?--acks needs a value}; shift 2 ;;
        --against) AGAINST=${2:?--against needs HOST:PORT}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_count "$RECORDS" || die "RECORDS must be a positive integer, got '$RECORDS'"
is_count "$RECORD_BYTES" || die "RECORD_BYTES must be a positive integer, got '$RECORD_BYTES'"
is_count "$RUNS" || die "RUNS must be a positive integer, got '$RUNS'"
PARTITION_LIST=${PARTITIONS//,/ }
for p in $PARTITION_LIST; do
    is_count "$p" || die "PARTITIONS must be a comma-separated list of positive integers, got '$PARTITIONS'"
done
case "$ACKS" in all | -1 | 1 | 0) ;; *) die "ACKS must be all, -1, 1 or 0, got '$ACKS'" ;; esac
if [ -n "$AGAINST" ] && ! [[ "$AGAINST" =~ ^[^:]+:[0-9]+$ ]]; then
    die "--against wants HOST:PORT, got '$AGAINST'"
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RILL="$TARGET_DIR/release/rill"
BENCH="$TARGET_DIR/release/rill-bench"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rill-bench.XXXXXX")
DATA="$WORK/data"
RESULTS="$WORK/results.jsonl"
BROKER_LOG="$WORK/broker.log"
BROKER_PID=""

CLEANUP_PIDS=(BROKER_PID)
CLEANUP_LOGS=(BROKER_LOG)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM


# --- 1. build -------------------------------------------------------------------------------
if [ -n "$AGAINST" ]; then
    build_release "$BENCH"
else
    build_release "$RILL" "$BENCH"
fi

# --- 2. disk sequential write speed -----------------------------------------------------------
# dd with conv=fdatasync counts the time to get the bytes onto the device, which is the same
# promise acks=all with a flushing broker makes. Measured next to the data dir, in this run,
# because disk speed on shared machines drifts from hour to hour.
FSTYPE=$(stat -f -c %T "$WORK")
if [ "$FSTYPE" = tmpfs ] || [ "$FSTYPE" = ramfs ]; then
    echo "warning: $WORK is on $FSTYPE, so the 'disk' is memory; set BENCH_TMPDIR to a real disk" >&2
fi
log "measuring sequential write speed in $WORK ($FSTYPE)"
DD_OUT=$(LC_ALL=C dd if=/dev/zero of="$WORK/dd.bin" bs=1M count=1024 conv=fdatasync 2>&1) \
    || { echo "$DD_OUT" >&2; die "dd failed"; }
rm -f "$WORK/dd.bin"
# "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 2.1 s, 511 MB/s": recompute from bytes and
# seconds rather than trusting dd's unit (kB/s, MB/s, GB/s depend on the speed).
DISK_MBPS=$(echo "$DD_OUT" | tail -n 1 | awk -F', ' '{
    split($1, b, " "); split($(NF - 1), s, " ");
    if (s[1] > 0) printf "%.1f", b[1] / s[1] / 1e6 }')
[ -n "$DISK_MBPS" ] || { echo "$DD_OUT" >&2; die "could not parse dd's output"; }
log "disk: $DISK_MBPS MB/s"

# --- 3. broker --------------------------------------------------------------------------------

PID_ARGS=()
if [ -n "$AGAINST" ]; then
    BROKERS=$AGAINST
    LABEL="broker at $AGAINST"
    log "driving the external broker at $AGAINST (no broker RSS/CPU)"
else
    LABEL="rill"
    start_rill_broker "$DATA"
    PID_ARGS=(--broker-pid "$BROKER_PID")
fi

# --- 4/5. produce and consume, RUNS times per partition count ---------------------------------
: >"$RESULTS"
STAMP=$(date +%s)
for p in $PARTITION_LIST; do
    for run in $(seq "$RUNS"); do
        # A fresh topic per run, so every read-back is exactly one run's records.
        topic="bench-$STAMP-p$p-r$run"
        log "run $run/$RUNS, $p partition(s): produce $RECORDS x $RECORD_BYTES B, acks=$ACKS -> $topic"
        "$BENCH" produce --brokers "$BROKERS" --topic "$topic" --records "$RECORDS" \
            --record-bytes "$RECORD_BYTES" --partitions "$p" --acks "$ACKS" "${PID_ARGS[@]}" \
            | tee -a "$RESULTS"
        log "run $run/$RUNS, $p partition(s): consume $topic"
        "$BENCH" consume --brokers "$BROKERS" --topic "$topic" --records "$RECORDS" \
            "${PID_ARGS[@]}" | tee -a "$RESULTS"
    done
done

# --- 6/7. broker usage, stop, table -----------------------------------------------------------
ON_DISK=""
if [ -z "$AGAINST" ]; then
    ON_DISK=$(du -sb "$DATA" | cut -f1)
fi
REPORT=$("$BENCH" report --input "$RESULTS" --label "$LABEL" --disk-mb-per-sec "$DISK_MBPS" \
    "${PID_ARGS[@]}")

SHUTDOWN=""
if [ -n "$BROKER_PID" ]; then
    t0=$(date +%s.%N)
    kill -TERM "$BROKER_PID"
    code=0
    wait "$BROKER_PID" || code=$?
    t1=$(date +%s.%N)
    SHUTDOWN=$(awk -v a="$t0" -v b="$t1" -v c="$code" \
        'BEGIN { printf "broker stopped %.2f s after SIGTERM, exit status %d", b - a, c }')
    BROKER_PID=""
fi

cat <<EOF

## Broker benchmark

Command: \`RECORDS=$RECORDS RECORD_BYTES=$RECORD_BYTES RUNS=$RUNS PARTITIONS=$PARTITIONS ACKS=$ACKS bench/broker.sh${AGAINST:+ --against $AGAINST}\`
Machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); data on $FSTYPE
Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')

$REPORT
EOF
if [ -n "$ON_DISK" ]; then
    total_records=$((RECORDS * RUNS * $(echo "$PARTITION_LIST" | wc -w)))
    awk -v d="$ON_DISK" -v n="$total_records" -v b="$RECORD_BYTES" 'BEGIN {
        printf "On disk: %.1f MB for %d records of %d B (%.1f B per record incl. framing and index)\n",
            d / 1e6, n, b, d / n }'
fi
[ -z "$SHUTDOWN" ] || echo "$SHUTDOWN"

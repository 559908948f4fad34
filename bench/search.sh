#!/usr/bin/env bash
# The `rill search` benchmark (issue 6): one command, run from anywhere in the repo.
#
#   bench/search.sh [--records N] [--runs N] [--regex RE] [--codec C] [--no-build] [--keep]
#                   [--against OTHER_RILL]
#
# It builds a release rill, starts a release broker on a free loopback port, creates topic
# `logs` (3 partitions) and produces RECORDS contract-shaped records (about 117 B each, so
# 600,000 records are about 70 MB) compressed with CODEC (lz4 by default, as rill-agent
# writes them), the newest 10% a moment after the rest. The producer is confluent-kafka
# (RILL_TEST_PYTHON, default target/test-venv/bin/python as tests/run-all.sh makes it):
# Debian's kcat (librdkafka 2.0) sends uncompressed batches to rill ("Broker does not support
# compression type lz4"), so it is only the fallback, and the report then says "none".
# The same lines go to a flat file. Then, RUNS times each, side by side:
#   rill search REGEX --count                 vs  grep -cE REGEX FILE
#   rill search REGEX --count --since T10     (T10: the time the newest 10% start)
#   rill search REGEX --count with the librdkafka reader (the TLS/SASL path), for reference
# and prints the medians of wall time (to the microsecond) and CPU time (to the millisecond),
# the counts (which must agree) and the ratios against the targets (within 1.5x of grep; with
# --since, within 0.3x of grep). rill runs from a copy of the binary in the work directory,
# as an install would place it (the file the linker writes is slower to start; see below).
# --against OTHER_RILL also runs another rill binary's search (the full scan and --since)
# in the same rounds, against the same broker and data, and prints how this rill compares:
# an A/B of two builds (a change's before and after) that the host's drift cannot skew,
# as every round runs both. Use many runs (RUNS=30) for steps of a few percent.
#
# Environment: RECORDS, RUNS, REGEX, CODEC (none|gzip|snappy|lz4|zstd); BENCH_TMPDIR picks
# where the data goes.
# Exit status is non-zero only when something failed (build, broker, a count that differs
# from grep's); missed targets are printed as MISSED.
set -euo pipefail
# EPOCHREALTIME and awk must agree on the decimal point.
export LC_NUMERIC=C
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RECORDS=${RECORDS:-600000}
RUNS=${RUNS:-3}
REGEX=${REGEX:-'time(d )?out|refused'}
CODEC=${CODEC:-lz4}
BUILD=1
KEEP=0
AGAINST=""


while [ $# -gt 0 ]; do
    case "$1" in
        --records) RECORDS=${2:?--records needs a value}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --regex) REGEX=${2:?--regex needs a value}; shift 2 ;;
        --codec) CODEC=${2:?--codec needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --against) AGAINST=${2:?--against needs a rill binary}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$RECORDS" =~ ^[1-9][0-9]*$ ]] || die "RECORDS must be a positive integer, got '$RECORDS'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, got '$RUNS'"
[[ "$CODEC" =~ ^(none|gzip|snappy|lz4|zstd)$ ]] || die "CODEC must be none, gzip, snappy, lz4 or zstd"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${RILL_TEST_PYTHON:-$ROOT/target/test-venv/bin/python}
if ! "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    command -v kcat >/dev/null || die "neither confluent-kafka ($PYTHON) nor kcat is available"
    log "no confluent-kafka at $PYTHON (run tests/run-all.sh once, or set RILL_TEST_PYTHON): producing with kcat, uncompressed"
    PYTHON=""
    CODEC=none
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RILL="$TARGET_DIR/release/rill"
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rill-search-bench.XXXXXX")
BROKER_LOG="$WORK/broker.log"
BROKER_PID=""

CLEANUP_PIDS=(BROKER_PID)
CLEANUP_LOGS=(BROKER_LOG)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    log "building rill (release)"
    cargo build --release -p rill
fi
[ -x "$RILL" ] || die "$RILL is missing (build it, or drop --no-build)"
[ -z "$AGAINST" ] || [ -x "$AGAINST" ] || die "--against $AGAINST is not an executable"
# The searches run copies of the binaries, as `cargo install` would place them: the file the
# linker writes starts 0.5 ms slower than a copy of itself, measured here on every exec
# (4.5 against 4.0 ms for a search that fails to connect; the same after its pages were
# dropped from the page cache). A comparison of a fresh build with an older copy was
# skewed by as much.
# Each copy's page cache is then dropped and read back in one sequential read, so that both
# binaries start from the same page-cache state: two copies of one binary, one made half an
# hour after the other, measured 0.926x against each other over 200 interleaved `--since`
# searches; dropped and read back alike, 0.994x and 1.011x.
mkdir -p "$WORK/bin"
cp "$RILL" "$WORK/bin/rill"
RILL="$WORK/bin/rill"
if [ -n "$AGAINST" ]; then
    cp "$AGAINST" "$WORK/bin/rill-other"
    AGAINST_LABEL=$AGAINST
    AGAINST="$WORK/bin/rill-other"
fi
for copy in "$WORK"/bin/*; do
    sync "$copy"
    dd if="$copy" iflag=nocache count=0 status=none
    cat "$copy" >/dev/null
done

# --- broker -------------------------------------------------------------------------------
start_rill_broker "$WORK/data"
"$RILL" topics create logs --partitions 3 --brokers "$BROKERS" >/dev/null

# --- data: KEY<TAB>VALUE for the producer, and the bare lines for grep -----------------------------
# Deterministic; about 117 B per value. ts is the time the data was generated (search filters
# on the Kafka timestamp, which the producer sets at produce time).
gen() { # FIRST COUNT
    awk -v first="$1" -v count="$2" -v ts="$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" \
        -v lines="$WORK/lines.txt" 'BEGIN {
        split("GET /api/v1/users 200,POST /api/v1/orders 201,connection timeout to db,upstream timed out while reading,connection refused by 10.0.0.7,cache miss for session,user login ok,disk usage at 81 percent,GET /static/app.js 304,job finished in 120 ms", msg, ",")
        split("error,warn,info,info,debug", lvl, ",")
        for (i = first; i < first + count; i++) {
            host = "web" (i % 8 + 1); src = "/var/log/app" (i % 4) ".log"
            line = sprintf("%s id=%07d req=%08x", msg[(i * 7 + int(i / 13)) % 10 + 1], i, i * 2654435761 % 4294967296)
            printf "%s:%s\t{\"ts\":\"%s\",\"host\":\"%s\",\"source\":\"%s\",\"line\":\"%s\",\"level\":\"%s\"}\n", host, src, ts, host, src, line, lvl[i % 5 + 1]
            print line >> lines
        }
    }'
}
produce() { # FIRST COUNT
    if [ -z "$PYTHON" ]; then
        gen "$1" "$2" | kcat -P -b "$BROKERS" -t logs -K $'\t' -X linger.ms=50 \
            -X batch.num.messages=10000 -X queue.buffering.max.messages=1000000
        return
    fi
    gen "$1" "$2" | "$PYTHON" -c '
import sys
from confluent_kafka import Producer
failed = []
def done(err, _msg):
    if err is not None:
        failed.append(str(err))
p = Producer({"bootstrap.servers": sys.argv[1], "compression.type": sys.argv[2],
              "linger.ms": 50, "batch.num.messages": 10000,
              "queue.buffering.max.messages": 1000000})
for line in sys.stdin.buffer:
    key, _, value = line.rstrip(b"\n").partition(b"\t")
    while True:
        try:
            p.produce("logs", value=value, key=key, on_delivery=done)
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)
if p.flush(60) or failed:
    sys.exit("delivery failed: %s" % failed[:3])
' "$BROKERS" "$CODEC"
}
OLD=$((RECORDS * 9 / 10))
NEW=$((RECORDS - OLD))
: >"$WORK/lines.txt"
log "producing $OLD records, then the newest $NEW"
t0=$(date +%s.%N)
produce 0 "$OLD"
sleep 1.5
SINCE=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 0.5
produce "$OLD" "$NEW"
t1=$(date +%s.%N)
BYTES=$(du -sb "$WORK/data/topics" | cut -f1)
awk -v a="$t0" -v b="$t1" -v n="$RECORDS" -v d="$BYTES" 'BEGIN {
    printf "== produced %d records in %.1f s; %.1f MB on disk\n", n, b - a, d / 1e6 }' >&2

# --- measure ------------------------------------------------------------------------------
# Wall time, and CPU time (user + system, from bash's `time`): on a shared machine the wall
# time of a multi-threaded search depends on the load more than grep's does; CPU time shows
# the work done. The broker's CPU during each search comes from /proc (10 ms ticks).
broker_ticks() { awk '{ print $14 + $15 }' "/proc/$BROKER_PID/stat"; }
# The wall time comes from bash's microsecond clock (EPOCHREALTIME): `time` reports whole
# milliseconds, too coarse for a 12 ms search (a step of 8 %). CPU time stays in ms.
measure() { # COMMAND... -> "WALL CPU BROKER_CPU OUTPUT" on stdout
    local out times t0 t1 w0 w1 TIMEFORMAT='%3R %3U %3S'
    t0=$(broker_ticks)
    # The command runs from this shell, not from a command substitution: that forked a
    # subshell inside the timed span, and its fork and exit (about 1 ms here) counted as
    # the command's time, for grep and rill alike.
    w0=$EPOCHREALTIME
    { time "$@" >"$WORK/out" 2>/dev/null; } 2>"$WORK/times"
    w1=$EPOCHREALTIME
    times=$(<"$WORK/times")
    t1=$(broker_ticks)
    out=$(cat "$WORK/out")
    awk -v t="$times" -v w0="$w0" -v w1="$w1" -v b="$(( t1 - t0 ))" -v hz="$(getconf CLK_TCK)" \
        -v o="$out" 'BEGIN {
        split(t, f, " "); wall = (w0 != "" && w1 != "") ? w1 - w0 : f[1]
        printf "%.6f %.3f %.3f %s\n", wall, f[2] + f[3], b / hz, o }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
column_median() { cut -d' ' -f"$1" "$2" | median; }

: >"$WORK/grep.txt" ; : >"$WORK/rill.txt" ; : >"$WORK/since.txt" ; : >"$WORK/rdkafka.txt"
: >"$WORK/other.txt" ; : >"$WORK/other-since.txt"
for run in $(seq "$RUNS"); do
    log "run $run/$RUNS"
    measure grep -cE "$REGEX" "$WORK/lines.txt" >>"$WORK/grep.txt"
    measure "$RILL" search "$REGEX" --count --brokers "$BROKERS" >>"$WORK/rill.txt"
    measure "$RILL" search "$REGEX" --count --since "$SINCE" --brokers "$BROKERS" >>"$WORK/since.txt"
    # The reader used for TLS/SASL connections, for reference.
    RILL_SEARCH_READER=librdkafka measure "$RILL" search "$REGEX" --count --brokers "$BROKERS" \
        >>"$WORK/rdkafka.txt"
    if [ -n "$AGAINST" ]; then
        measure "$AGAINST" search "$REGEX" --count --brokers "$BROKERS" >>"$WORK/other.txt"
        measure "$AGAINST" search "$REGEX" --count --since "$SINCE" --brokers "$BROKERS" \
            >>"$WORK/other-since.txt"
    fi
done
GREP_COUNT=$(awk 'NR == 1 { print $4 }' "$WORK/grep.txt")
RILL_COUNT=$(awk 'NR == 1 { print $4 }' "$WORK/rill.txt")
SINCE_COUNT=$(awk 'NR == 1 { print $4 }' "$WORK/since.txt")
RDKAFKA_COUNT=$(awk 'NR == 1 { print $4 }' "$WORK/rdkafka.txt")
SINCE_EXPECT=$(tail -n "$NEW" "$WORK/lines.txt" | grep -cE "$REGEX" || true)
FILE_MB=$(du -b "$WORK/lines.txt" | awk '{ printf "%.1f", $1 / 1e6 }')
GREP_S=$(column_median 1 "$WORK/grep.txt")
GREP_CPU=$(column_median 2 "$WORK/grep.txt")

# The verdict compares the ratio of the medians as measured (to the microsecond), not the
# ratio as printed: 0.304 is not within 0.3.
verdict() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { print (a / b <= t ? "ok" : "MISSED") }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
row() { # LABEL FILE COUNT [TARGET]
    local wall cpu broker
    wall=$(column_median 1 "$2"); cpu=$(column_median 2 "$2"); broker=$(column_median 3 "$2")
    printf '| %s | %s | %s | %sx | %s | %sx | %s | %s |\n' "$1" "$wall" "$3" \
        "$(ratio "$wall" "$GREP_S")" "$cpu" "$(ratio "$cpu" "$GREP_CPU")" "$broker" \
        "${4:+≤ ${4}x $(verdict "$wall" "$GREP_S" "$4")}"
}
cat <<EOT

## Search benchmark

Command: \`RECORDS=$RECORDS RUNS=$RUNS bench/search.sh\`, regex \`$REGEX\`
Machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); load: $(cut -d' ' -f1-3 /proc/loadavg)
Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')
Data: $RECORDS records in topic logs (3 partitions, $CODEC), $(awk -v d="$BYTES" 'BEGIN { printf "%.1f", d / 1e6 }') MB on disk; the same lines in a $FILE_MB MB flat file

| measurement (median of $RUNS) | wall s | count | wall vs grep | CPU s | CPU vs grep | broker CPU s | target |
|---|---:|---:|---:|---:|---:|---:|---:|
| \`grep -cE\` over the flat file | $GREP_S | $GREP_COUNT | 1.00x | $GREP_CPU | 1.00x | | |
$(row '`rill search --count`' "$WORK/rill.txt" "$RILL_COUNT" 1.5)
$(row '`rill search --count --since` (newest 10%)' "$WORK/since.txt" "$SINCE_COUNT" 0.3)
$(row '`rill search --count`, librdkafka reader (TLS/SASL)' "$WORK/rdkafka.txt" "$RDKAFKA_COUNT")
EOT
[ "$RILL_COUNT" = "$GREP_COUNT" ] || die "rill search counted $RILL_COUNT, grep $GREP_COUNT"
[ "$RDKAFKA_COUNT" = "$GREP_COUNT" ] || die "rill search (librdkafka) counted $RDKAFKA_COUNT, grep $GREP_COUNT"
[ "$SINCE_COUNT" = "$SINCE_EXPECT" ] || die "rill search --since counted $SINCE_COUNT, grep over the newest $NEW lines $SINCE_EXPECT"
if [ -n "$AGAINST" ]; then
    # Both columns' medians, and this rill's time as a share of the other's.
    ab() { # LABEL THIS_FILE OTHER_FILE
        local w1 c1 w2 c2
        w1=$(column_median 1 "$2"); c1=$(column_median 2 "$2")
        w2=$(column_median 1 "$3"); c2=$(column_median 2 "$3")
        printf '| %s | %s / %s | %sx | %s / %s | %sx |\n' "$1" "$w1" "$w2" "$(ratio "$w1" "$w2")" \
            "$c1" "$c2" "$(ratio "$c1" "$c2")"
    }
    cat <<EOT

Against \`$AGAINST_LABEL\` (same rounds, broker and data; medians of $RUNS):

| measurement | wall s, this / other | wall ratio | CPU s, this / other | CPU ratio |
|---|---:|---:|---:|---:|
$(ab '`rill search --count`' "$WORK/rill.txt" "$WORK/other.txt")
$(ab '`rill search --count --since` (newest 10%)' "$WORK/since.txt" "$WORK/other-since.txt")
EOT
    OTHER_COUNT=$(awk 'NR == 1 { print $4 }' "$WORK/other.txt")
    OTHER_SINCE=$(awk 'NR == 1 { print $4 }' "$WORK/other-since.txt")
    [ "$OTHER_COUNT" = "$GREP_COUNT" ] || die "$AGAINST_LABEL search counted $OTHER_COUNT, grep $GREP_COUNT"
    [ "$OTHER_SINCE" = "$SINCE_EXPECT" ] || die "$AGAINST_LABEL search --since counted $OTHER_SINCE, expected $SINCE_EXPECT"
fi

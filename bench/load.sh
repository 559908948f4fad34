#!/usr/bin/env bash
# The rill connection-load benchmark (issue 8): one command, run from anywhere in the repo.
#
#   bench/load.sh [--connections N] [--seconds S] [--rate R] [--partitions P] [--no-build] [--keep]
#
# It builds release binaries, starts a release broker on a free loopback port, and holds
# CONNECTIONS concurrent TCP connections against it for SECONDS: half produce (acks=1, batches
# of 10 records of 100 bytes, RATE requests per second each), half long-poll Fetch on their
# partition from its beginning and follow it. The driver (rill-bench load) speaks the Kafka
# protocol itself, one tokio task per connection, so 500 connections cost the driver little.
# It prints request latency percentiles, errors, records produced and consumed, and the broker's
# RSS sampled every second: "memory flat" is the last sample over the sample after the first
# quarter of the run (warm-up excluded).
#
# Every option can also come from the environment: CONNECTIONS (default 500), RUN_SECONDS (60),
# RATE (10), PARTITIONS (8). BENCH_TMPDIR picks where the data dir goes.
#
# Exit status is non-zero when something failed (build, broker start, a driver error); errors
# seen by connections and missed targets are printed as MISSED.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CONNECTIONS=${CONNECTIONS:-500}
RUN_SECONDS=${RUN_SECONDS:-60}
RATE=${RATE:-10}
PARTITIONS=${PARTITIONS:-8}
BUILD=1
KEEP=0

while [ $# -gt 0 ]; do
    case "$1" in
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --seconds) RUN_SECONDS=${2:?--seconds needs a value}; shift 2 ;;
        --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
        --partitions) PARTITIONS=${2:?--partitions needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_count "$CONNECTIONS" || die "CONNECTIONS must be a positive integer, got '$CONNECTIONS'"
is_count "$RUN_SECONDS" || die "RUN_SECONDS must be a positive integer, got '$RUN_SECONDS'"
is_count "$RATE" || die "RATE must be a positive integer, got '$RATE'"
is_count "$PARTITIONS" || die "PARTITIONS must be a positive integer, got '$PARTITIONS'"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RILL="$TARGET_DIR/release/rill"
BENCH="$TARGET_DIR/release/rill-bench"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rill-load-bench.XXXXXX")
BROKER_PID=""
BROKER_LOG="$WORK/broker.log"
CLEANUP_PIDS=(BROKER_PID)
CLEANUP_LOGS=(BROKER_LOG)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

build_release "$RILL" "$BENCH"

# The driver holds one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
start_rill_broker "$WORK/data"
log "load: $CONNECTIONS connections for $RUN_SECONDS s ($(uptime | sed 's/.*load average/load average/'))"
RESULT=$("$BENCH" load --brokers "$BROKERS" --topic load --partitions "$PARTITIONS" \
    --connections "$CONNECTIONS" --seconds "$RUN_SECONDS" --rate "$RATE" --broker-pid "$BROKER_PID")
echo "$RESULT" >"$WORK/result.json"

python3 - "$WORK/result.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
rss = r["broker_rss_mib"]
growth = r["broker_rss_growth"]
def verdict(ok): return "ok" if ok else "MISSED"
print()
print("| connections | seconds | records produced | records consumed | produce p50 / p99 / p99.9 / max | fetch p50 / p99 (answers with data, long-poll wait included) | errors | broker RSS first / peak / last | RSS last ÷ after warm-up |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| {r['connections']} | {r['seconds']:.0f} | {r['records_produced']:,} | {r['records_consumed']:,} "
      f"| {r['produce_p50_ms']:.2f} / {r['produce_p99_ms']:.2f} / {r['produce_p999_ms']:.2f} / {r['produce_max_ms']:.1f} ms "
      f"| {r['fetch_p50_ms']:.2f} / {r['fetch_p99_ms']:.2f} ms | {r['errors']} "
      f"| {rss[0] if rss else 0:.1f} / {max(rss) if rss else 0:.1f} / {rss[-1] if rss else 0:.1f} MiB "
      f"| {growth if growth is not None else 0:.2f} |")
print()
print(f"errors = 0: {verdict(r['errors'] == 0)}" + (f" (first: {r['first_error']})" if r['first_error'] else ""))
print(f"memory flat (last ≤ 1.10 × after warm-up): {verdict(growth is not None and growth <= 1.10)}")
EOF
log "$(grep -c . "$BROKER_LOG") broker log lines; $(grep -ci 'error\|panic' "$BROKER_LOG" || true) mention errors"

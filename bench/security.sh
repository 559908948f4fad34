#!/usr/bin/env bash
# What TLS + SASL cost (issue 8): the same produce/consume load against a PLAINTEXT broker (the
# baseline) and a SASL_SSL broker (TLS 1.3, SCRAM-SHA-256), run alternately in one session.
#
#   bench/security.sh [--runs N] [--records N] [--record-bytes N] [--no-build] [--keep]
#
# It builds release binaries, makes a CA and a broker certificate with the openssl CLI, adds a
# user with `rill users add`, starts both brokers on free loopback ports, then RUNS times:
# produce RECORDS records of RECORD_BYTES bytes with acks=all into a fresh topic and read them
# back, first on the baseline, then over SASL_SSL. It prints the medians per broker and the
# SASL_SSL/PLAINTEXT ratios, plus each broker's CPU seconds per million records.
#
# Options can also come from the environment: RECORDS, RECORD_BYTES, RUNS. BENCH_TMPDIR picks
# where the data dirs go.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RECORDS=${RECORDS:-500000}
RECORD_BYTES=${RECORD_BYTES:-100}
RUNS=${RUNS:-3}
BUILD=1
KEEP=0

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --records) RECORDS=${2:?--records needs a value}; shift 2 ;;
        --record-bytes) RECORD_BYTES=${2:?--record-bytes needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
is_count "$RECORDS" || die "RECORDS must be a positive integer, got '$RECORDS'"
is_count "$RECORD_BYTES" || die "RECORD_BYTES must be a positive integer, got '$RECORD_BYTES'"
is_count "$RUNS" || die "RUNS must be a positive integer, got '$RUNS'"
command -v openssl >/dev/null || die "the openssl CLI is needed to make test certificates"
command -v jq >/dev/null || die "jq is needed to compute the medians"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RILL="$TARGET_DIR/release/rill"
BENCH="$TARGET_DIR/release/rill-bench"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rill-bench-sec.XXXXXX")
PLAIN_PID=""
SECURE_PID=""
PLAIN_LOG="$WORK/plain.log"
SECURE_LOG="$WORK/secure.log"
CLEANUP_PIDS=(PLAIN_PID SECURE_PID)
CLEANUP_LOGS=(PLAIN_LOG SECURE_LOG)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    log "building rill and rill-bench (release)"
    cargo build --release -p rill -p rill-bench
fi
[ -x "$RILL" ] && [ -x "$BENCH" ] || die "release binaries missing (build them, or drop --no-build)"

# --- certificates and a user ------------------------------------------------------------------
log "making a CA, a broker certificate for 127.0.0.1 and a user"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=rill-bench-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$WORK/broker.key" -out "$WORK/broker.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/broker.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 1 -extfile "$WORK/san.ext" -out "$WORK/broker.pem" 2>/dev/null
PASSWORD="bench-$RANDOM-$RANDOM"
echo "$PASSWORD" | "$RILL" users add bench --admin '*' --file "$WORK/users.toml" 2>/dev/null

# --- brokers ----------------------------------------------------------------------------------
BROKER_LOG=$PLAIN_LOG
start_rill_broker "$WORK/plain-data"
PLAIN_PID=$BROKER_PID
PLAIN_BROKERS=$BROKERS
BROKER_LOG=$SECURE_LOG
start_rill_broker "$WORK/secure-data" --tls-cert "$WORK/broker.pem" --tls-key "$WORK/broker.key" \
    --users-file "$WORK/users.toml"
SECURE_PID=$BROKER_PID
SECURE_BROKERS=$BROKERS
SECURE_ARGS=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/ca.pem"
    -X sasl.mechanism=SCRAM-SHA-256 -X sasl.username=bench -X "sasl.password=$PASSWORD")

# --- runs, alternating ------------------------------------------------------------------------
STAMP=$(date +%s)
for run in $(seq "$RUNS"); do
    for mode in plain secure; do
        if [ "$mode" = plain ]; then
            brokers=$PLAIN_BROKERS pid=$PLAIN_PID extra=()
        else
            brokers=$SECURE_BROKERS pid=$SECURE_PID extra=("${SECURE_ARGS[@]}")
        fi
        topic="sec-$STAMP-$mode-r$run"
        log "run $run/$RUNS, $mode: produce $RECORDS x $RECORD_BYTES B (acks=all), then consume"
        "$BENCH" produce --brokers "$brokers" --topic "$topic" --records "$RECORDS" \
            --record-bytes "$RECORD_BYTES" --partitions 1 --acks all --broker-pid "$pid" \
            "${extra[@]}" >>"$WORK/$mode.jsonl"
        "$BENCH" consume --brokers "$brokers" --topic "$topic" --records "$RECORDS" \
            --broker-pid "$pid" "${extra[@]}" >>"$WORK/$mode.jsonl"
    done
done

# --- medians ----------------------------------------------------------------------------------
median() { # FILE KIND FIELD
    jq -s --arg k "$2" "[.[] | select(.kind == \$k) | $3] | sort | .[(length - 1) / 2 | floor]" "$1"
}
row() { # LABEL KIND FIELD FORMAT
    local p s
    p=$(median "$WORK/plain.jsonl" "$2" "$3")
    s=$(median "$WORK/secure.jsonl" "$2" "$3")
    awk -v l="$1" -v p="$p" -v s="$s" -v f="$4" \
        'BEGIN { printf "| %s | " f " | " f " | %.2f |\n", l, p, s, (p > 0 ? s / p : 0) }'
}
cat <<EOF

## TLS + SASL cost

Command: \`RECORDS=$RECORDS RECORD_BYTES=$RECORD_BYTES RUNS=$RUNS bench/security.sh\`
Machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); medians of $RUNS alternating runs

| metric | PLAINTEXT | SASL_SSL (TLS 1.3, SCRAM-SHA-256) | ratio |
|---|---:|---:|---:|
EOF
row "produce records/s (acks=all)" produce .records_per_sec "%'.0f"
row "produce latency p50 (ms)" produce .latency_ms.p50 "%.1f"
row "produce latency p99 (ms)" produce .latency_ms.p99 "%.1f"
row "consume records/s" consume .records_per_sec "%'.0f"
row "broker CPU s per 1M records produced" produce "(.broker_cpu_s / .records * 1e6)" "%.2f"
row "broker CPU s per 1M records consumed" consume "(.broker_cpu_s / .records * 1e6)" "%.2f"

#!/usr/bin/env bash
# rill's fuzzing run (issue 8): every fuzz target for a fixed time; zero crashes expected.
#
#   bench/fuzz.sh [--seconds S] [--targets LIST] [--jobs N]
#
# Targets (fuzz/fuzz_targets/, coverage-guided with cargo-fuzz and libFuzzer):
#   request_decoding  a request frame into the broker's request handler
#   record_batches    a producer's records into the broker's batch validation
#   agent_lines       a log file's bytes, in chunks, into the agent's line splitter
#   config_parsing    config text into the broker's and the agent's config parsers
# The corpus each run grows is kept in fuzz/corpus/TARGET (commit it: the next run starts
# from there). A crash stops the script with the input saved under fuzz/artifacts/TARGET and
# the command that replays it.
#
# cargo-fuzz is installed with `cargo install` if missing. It needs nightly-only compiler
# flags; the machine has one stable toolchain, so RUSTC_BOOTSTRAP=1 unlocks them. The targets
# run without AddressSanitizer (`-s none`): rill links C libraries (librdkafka, zstd) whose
# ASan-instrumented builds break librdkafka's configure script, and rill's own code is safe
# Rust, where what fuzzing finds is panics, aborts, failed invariants, hangs and runaway
# memory (libFuzzer's -rss_limit_mb and -timeout catch the last two).
# Every option can also come from the environment: FUZZ_SECONDS (default 60), TARGETS
# (comma-separated), JOBS (parallel fuzzing processes per target, default 1).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
TARGETS=${TARGETS:-request_decoding,record_batches,agent_lines,config_parsing}
JOBS=${JOBS:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) FUZZ_SECONDS=${2:?--seconds needs a value}; shift 2 ;;
        --targets) TARGETS=${2:?--targets needs a value}; shift 2 ;;
        --jobs) JOBS=${2:?--jobs needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
is_count "$FUZZ_SECONDS" || die "FUZZ_SECONDS must be a positive integer, got '$FUZZ_SECONDS'"
is_count "$JOBS" || die "JOBS must be a positive integer, got '$JOBS'"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rill-fuzz.XXXXXX")
KEEP=0
CLEANUP_PIDS=()
CLEANUP_LOGS=()
trap bench_cleanup EXIT

ROWS=()
for target in ${TARGETS//,/ }; do
    [ -f "fuzz/fuzz_targets/$target.rs" ] || die "no fuzz target '$target' in fuzz/fuzz_targets"
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    before=$(find "$corpus" -type f | wc -l)
    log "fuzzing $target for $FUZZ_SECONDS s (corpus $corpus: $before inputs; $(uptime | sed 's/.*load average/load average/'))"
    out="$WORK/$target.log"
    status=0
    cargo fuzz run -s none "$target" "$corpus" -- -max_total_time="$FUZZ_SECONDS" -jobs="$JOBS" \
        -workers="$JOBS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$out" 2>&1 || status=$?
    # With -jobs, libFuzzer writes each job's log to fuzz-N.log in the current directory.
    if [ "$JOBS" -gt 1 ]; then cat fuzz-*.log >>"$out" 2>/dev/null || true; rm -f fuzz-*.log; fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | awk '{s += $2} END {print s + 0}')
    after=$(find "$corpus" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$out" >&2
        die "$target crashed or failed (status $status): the input is under fuzz/artifacts/$target; replay it with: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $target fuzz/artifacts/$target/<file>"
    fi
    ROWS+=("| $target | $FUZZ_SECONDS | $runs | $before → $after | 0 |")
done

echo
echo "| target | seconds | executions | corpus inputs | crashes |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"

#!/usr/bin/env bash
# Regenerate the README screenshots from a real run of rill.
#
#   bash screenshots/make.sh              # every scenario
#   bash screenshots/make.sh broker       # only the named ones
#   bash screenshots/make.sh --selftest   # only check the renderer (ansi_png.py --selftest)
#
# Each scenario drives a detached tmux session of a fixed size (SHOTS_COLS x SHOTS_ROWS, default
# 110x36) on a private tmux server, waits for the text it expects to appear (never a fixed
# sleep), captures the window with ANSI colours and renders it to screenshots/NAME.png with
# ansi_png.py. Needs: python3 (with venv), tmux, kcat, DejaVu fonts, cargo (unless RILL_BIN).
#
# Environment:
#   RILL_BIN          use this rill binary instead of building one (cargo build -p rill)
#   CARGO_TARGET_DIR  where cargo builds it (default: target/ of this repo)
#   SHOTS_COLS/ROWS   terminal size (default 110x36)
#   SHOTS_TIMEOUT     seconds to wait for any expected text (default 30)
#   SHOTS_KEEP=1      keep the scratch directory (captures as text, broker data) for debugging
#
# Adding a scenario: write a function scenario_NAME below (new_session, run, wait_for, shot),
# and add NAME to SCENARIOS. `shot` writes screenshots/NAME.png.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
COLS=${SHOTS_COLS:-110}
ROWS=${SHOTS_ROWS:-36}
TIMEOUT=${SHOTS_TIMEOUT:-30}
PILLOW_VERSION=11.3.0
VENV=$ROOT/target/screenshot-venv
SCENARIOS=(broker dash_tail dash_metrics dash_lag dash_topics dash_search)

log() { printf '[shots] %s\n' "$*" >&2; }
die() { printf '[shots] error: %s\n' "$*" >&2; exit 1; }

# --- setup -------------------------------------------------------------------------------------

for tool in tmux kcat python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"
done

if ! "$VENV/bin/python" -c "import PIL, sys; sys.exit(PIL.__version__ != '$PILLOW_VERSION')" 2>/dev/null; then
    log "creating $VENV with Pillow $PILLOW_VERSION"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pillow==$PILLOW_VERSION"
fi
PY=$VENV/bin/python
if [[ "${1:-}" == --selftest ]]; then
    exec "$PY" "$HERE/ansi_png.py" --selftest
fi

if [[ -z "${RILL_BIN:-}" ]]; then
    log "building rill (cargo build -p rill)"
    (cd "$ROOT" && cargo build --quiet -p rill)
    RILL_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/rill
fi
RILL_BIN=$(cd "$(dirname "$RILL_BIN")" && pwd)/$(basename "$RILL_BIN")
[[ -x "$RILL_BIN" ]] || die "no rill binary at $RILL_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rill-shots.XXXXXX")
SOCK=$WORK/tmux.sock # a private tmux server: never touches the user's sessions
BROKER_PID=
BG_PIDS=() # the dashboard scenarios' agents, log writer and consumers

cleanup() {
    tmux -S "$SOCK" kill-server 2>/dev/null || true
    # Pipelines run in their own process group (setsid): kill the whole group.
    for pid in "${BG_PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "$BROKER_PID" ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    if [[ "${SHOTS_KEEP:-}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port that is free now, preferring $1 so screenshots look the same from run to run.
free_port() {
    "$PY" - "${1:-0}" <<'EOF'
import socket, sys
for port in (int(sys.argv[1]), 0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    break
EOF
}

# --- tmux helpers ------------------------------------------------------------------------------

t() { tmux -S "$SOCK" -f /dev/null "$@"; }

# The shell every pane runs: a clean environment, `rill` on PATH, and a `$ ` prompt (the `$` in
# bold green, so commands stand out from their output).
PANE_SHELL=(env -i "HOME=$WORK" "PATH=$(dirname "$RILL_BIN"):/usr/local/bin:/usr/bin:/bin"
    TERM=tmux-256color LANG=C.UTF-8 HISTFILE=/dev/null
    'PS1=\[\e[1;32m\]$\[\e[0m\] ' 'PS2=\[\e[2m\]>\[\e[0m\] '
    bash --norc --noprofile)

# new_session NAME [TITLE]: a detached COLSxROWS session running the pane shell in $WORK;
# prints the first pane's id. TITLE is shown on the pane's border once the window is split.
new_session() {
    t new-session -d -s "$1" -x "$COLS" -y "$ROWS" -c "$WORK" "${PANE_SHELL[@]}"
    t set -g status off
    t set -g window-size manual
    local pane
    pane=$(t display-message -p -t "$1" '#{pane_id}')
    t select-pane -t "$pane" -T "${2:-shell}"
    wait_for "$pane" '$'
    echo "$pane"
}

# split PANE LINES [TITLE]: split PANE, giving the new pane (below) LINES rows; prints its id.
# Split windows get a title line above each pane, as tmux's pane-border-status top draws it.
split() {
    local pane
    t set -w -t "$1" pane-border-status top
    t set -w -t "$1" pane-border-format ' #{pane_title} '
    pane=$(t split-window -v -t "$1" -l "$2" -c "$WORK" -P -F '#{pane_id}' "${PANE_SHELL[@]}")
    t select-pane -t "$pane" -T "${3:-shell}"
    wait_for "$pane" '$'
    echo "$pane"
}

# The pane's text, scrollback included, wrapped lines joined, trailing blanks trimmed.
screen_text() { t capture-pane -p -J -S - -t "$1" | sed 's/ *$//'; }

# wait_for PANE TEXT [SECONDS]: poll the pane (scrollback included) until TEXT appears.
wait_for() {
    local deadline=$((SECONDS + ${3:-$TIMEOUT}))
    until screen_text "$1" | grep -qF -- "$2"; do
        if ((SECONDS >= deadline)); then
            screen_text "$1" | tail -n 15 >&2
            die "timed out waiting for '$2' in pane $1"
        fi
        sleep 0.1
    done
}

# on_screen PANE TEXT: fail unless TEXT is on the pane's visible screen, e.g. to notice that a
# scenario's first command scrolled off because its output grew: make the pane taller then.
on_screen() {
    t capture-pane -p -t "$1" | grep -qF -- "$2" ||
        die "'$2' is no longer on screen in pane $1: the scenario needs more rows"
}

prompts() { screen_text "$1" | grep -c '^\$ ' || true; }

# type_line PANE TEXT: type TEXT and press Enter, without waiting.
type_line() {
    t send-keys -t "$1" -l -- "$2"
    t send-keys -t "$1" Enter
}

# run PANE COMMAND: type COMMAND (lines separated by newlines, e.g. a heredoc) and wait for
# it to finish, i.e. for a new, empty prompt on the last line.
run() {
    local pane=$1 before line
    before=$(prompts "$pane")
    while IFS= read -r line; do type_line "$pane" "$line"; done <<<"$2"
    wait_prompt "$pane" "$before" "$2"
}

# interrupt PANE: Ctrl-C the pane's foreground program and wait for the shell's prompt.
interrupt() {
    local before
    before=$(prompts "$1")
    t send-keys -t "$1" C-c
    wait_prompt "$1" $((before - 1)) "Ctrl-C"
}

# wait_prompt PANE N WHAT: wait until more than N commands were typed and the last line is
# an empty prompt.
wait_prompt() {
    local pane=$1 before=$2 deadline=$((SECONDS + TIMEOUT))
    until (($(prompts "$pane") > before)) && [[ "$(screen_text "$pane" | sed '/^$/d' | tail -n 1)" == '$' ]]; do
        if ((SECONDS >= deadline)); then
            screen_text "$pane" | tail -n 15 >&2
            die "timed out waiting for '$3' to finish in pane $pane"
        fi
        sleep 0.1
    done
}

# shot NAME SESSION [TITLE]: render the session's current window to screenshots/NAME.png.
shot() {
    "$PY" "$HERE/ansi_png.py" --tmux "$2" --tmux-socket "$SOCK" --title "${3:-$1}" \
        --save-capture "$WORK/$1.txt" -o "$WORK/$1.png"
    mv "$WORK/$1.png" "$HERE/$1.png"
    log "wrote screenshots/$1.png"
}

# start_broker: a background broker for scenarios that need one but do not show it; sets
# BROKER_ADDR (host:port). Its log is $WORK/broker.log.
start_broker() {
    [[ -n "$BROKER_PID" ]] && return
    local port
    port=$(free_port 39093)
    "$RILL_BIN" broker --listen "127.0.0.1:$port" --data-dir "$WORK/bg-data" >"$WORK/broker.log" 2>&1 &
    BROKER_PID=$!
    local deadline=$((SECONDS + TIMEOUT))
    until grep -qs 'listening on' "$WORK/broker.log"; do
        kill -0 "$BROKER_PID" 2>/dev/null || { cat "$WORK/broker.log" >&2; die "the broker exited"; }
        ((SECONDS < deadline)) || die "the broker did not start"
        sleep 0.1
    done
    BROKER_ADDR=127.0.0.1:$port
}

# --- scenarios ---------------------------------------------------------------------------------

# broker.png: the broker's log on top; below, a shell creating a topic, producing keyed log
# lines with kcat, consuming them back and describing the topic.
scenario_broker() {
    local top bottom port
    port=$(free_port 39092)
    top=$(new_session broker "rill broker")
    bottom=$(split "$top" $((ROWS - 6)) "shell")
    type_line "$top" "rill broker --listen 127.0.0.1:$port --data-dir ./data"
    wait_for "$top" "listening on"

    run "$bottom" "export RILL_BROKERS=127.0.0.1:$port"
    run "$bottom" "rill topics create logs --partitions 3"
    run "$bottom" "kcat -P -b \$RILL_BROKERS -t logs -K'|' <<'EOF'
web-1:nginx|GET /api/orders/1842 200 12ms
web-2:nginx|GET /api/cart 200 8ms
db-1:postgres|LOG:  checkpoint complete: wrote 214 buffers (1.3%)
web-1:app|WARN payment provider slow: 1.8s (retrying)
web-2:app|ERROR order 1843: card declined
EOF"
    run "$bottom" "kcat -C -b \$RILL_BROKERS -t logs -o beginning -e -q -f '%p %o %k %s\n'"
    run "$bottom" "rill topics describe logs"
    on_screen "$bottom" "export RILL_BROKERS"
    shot broker broker "rill broker · kcat"
    interrupt "$top"
}

# The dashboard scenarios share one real setup, made once: a broker; two rill-agents (hosts
# web-1 and db-1) tailing log files that a writer appends to, and publishing host metrics every
# second; and three consumer groups: indexer keeps up, billing reads through a slow pipe and
# falls behind, archiver read 10 records and left.
DASH_READY=
dash_setup() {
    [[ -n "$DASH_READY" ]] && return
    local agent host
    agent=${RILL_AGENT_BIN:-$(dirname "$RILL_BIN")/rill-agent}
    if [[ ! -x "$agent" ]]; then
        log "building rill-agent (cargo build -p rill-agent)"
        (cd "$ROOT" && cargo build --quiet -p rill-agent)
    fi
    start_broker
    "$RILL_BIN" topics create logs --partitions 3 --brokers "$BROKER_ADDR" >/dev/null
    "$RILL_BIN" topics create metrics --partitions 1 --brokers "$BROKER_ADDR" >/dev/null
    for host in web-1 db-1; do
        mkdir -p "$WORK/var/$host" "$WORK/agent-$host"
        printf 'brokers = "%s"\nhost = "%s"\ndata_dir = "%s"\n[[files]]\ninclude = ["%s/*.log"]\nread_from = "beginning"\n[metrics]\ninterval_ms = 1000\n' \
            "$BROKER_ADDR" "$host" "$WORK/agent-$host" "$WORK/var/$host" >"$WORK/agent-$host.toml"
        "$agent" --config "$WORK/agent-$host.toml" </dev/null >"$WORK/agent-$host.log" 2>&1 &
        BG_PIDS+=($!)
    done
    "$PY" "$HERE/loggen.py" "$WORK/var" </dev/null >/dev/null 2>&1 &
    BG_PIDS+=($!)
    sleep 3 # some history before the groups start
    kcat -b "$BROKER_ADDR" -G archiver -X auto.offset.reset=earliest -c 10 -e -q logs >/dev/null 2>&1 || true
    kcat -b "$BROKER_ADDR" -G indexer -X auto.offset.reset=earliest -q logs </dev/null >/dev/null 2>&1 &
    BG_PIDS+=($!)
    # billing "processes" a line in 0.25 s: the pipe fills and kcat waits, committing only what
    # was read, so its offsets move while its lag grows.
    setsid bash -c "kcat -b '$BROKER_ADDR' -G billing -X auto.offset.reset=earliest -q logs 2>/dev/null |
        while read -r _; do sleep 0.25; done" </dev/null >/dev/null 2>&1 &
    BG_PIDS+=($!)
    DASH_READY=1
}

# dash_session NAME: a session running `rill dash` against the setup's broker, once it shows
# records; prints the pane id. Call dash_setup first, in the scenario's own shell: inside the
# $(...) that captures the pane id, its variables would be lost.
dash_session() {
    local pane
    pane=$(new_session "$1" "rill dash")
    type_line "$pane" "rill dash --brokers $BROKER_ADDR"
    wait_for "$pane" "connected"
    wait_for "$pane" "web-1"
    echo "$pane"
}

quit_dash() {
    t send-keys -t "$1" q
    sleep 0.5
}

# dash_tail.png: the Tail view following live records, an include filter highlighted.
scenario_dash_tail() {
    local pane
    dash_setup
    pane=$(dash_session dash_tail)
    sleep 4
    t send-keys -t "$pane" /
    t send-keys -t "$pane" -l 'orders|timeout|deadlock'
    t send-keys -t "$pane" Enter
    wait_for "$pane" "+/orders|timeout|deadlock/"
    sleep 3
    shot dash_tail dash_tail "rill dash · Tail"
    quit_dash "$pane"
}

# dash_metrics.png: hosts with CPU, memory, load and network, and the selected host's charts.
scenario_dash_metrics() {
    local pane
    dash_setup
    pane=$(dash_session dash_metrics)
    t send-keys -t "$pane" 2
    wait_for "$pane" "db-1"
    sleep 20 # a little history for the charts
    t send-keys -t "$pane" Down
    sleep 1
    shot dash_metrics dash_metrics "rill dash · Metrics"
    quit_dash "$pane"
}

# dash_lag.png: one group keeping up, one falling behind, one gone.
scenario_dash_lag() {
    local pane
    dash_setup
    pane=$(dash_session dash_lag)
    t send-keys -t "$pane" 3
    wait_for "$pane" "LAGGING" 60
    wait_for "$pane" "EMPTY"
    sleep 6 # a few trend points
    shot dash_lag dash_lag "rill dash · Lag"
    quit_dash "$pane"
}

# dash_topics.png: topics, offsets, rates and retention.
scenario_dash_topics() {
    local pane
    dash_setup
    pane=$(dash_session dash_topics)
    t send-keys -t "$pane" 4
    wait_for "$pane" "RETENTION"
    sleep 10 # a few rate points
    shot dash_topics dash_topics "rill dash · Topics"
    quit_dash "$pane"
}

# dash_search.png: a search over the stored logs, the matches highlighted.
scenario_dash_search() {
    local pane
    dash_setup
    pane=$(dash_session dash_search)
    t send-keys -t "$pane" 5
    t send-keys -t "$pane" /
    t send-keys -t "$pane" -l 'timeout|declined|deadlock level:error since:15m'
    t send-keys -t "$pane" Enter
    wait_for "$pane" "· done"
    shot dash_search dash_search "rill dash · Search"
    quit_dash "$pane"
}

# --- main --------------------------------------------------------------------------------------

selected=("$@")
((${#selected[@]})) || selected=("${SCENARIOS[@]}")
for name in "${selected[@]}"; do
    declare -F "scenario_$name" >/dev/null || die "no scenario '$name' (have: ${SCENARIOS[*]})"
done
cd "$WORK"
for name in "${selected[@]}"; do
    log "scenario $name"
    "scenario_$name"
    t kill-session -t "$name" 2>/dev/null || true
done

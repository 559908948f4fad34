#!/usr/bin/env bash
# The project's test command (CI runs it from a fresh clone via .ci/run).
# 1. installs what the tests need (idempotent, non-interactive)
# 2. cargo fmt --check, cargo clippy -D warnings, cargo check of the fuzz targets
# 3. cargo build --workspace (helper binaries for other crates' tests)
# 4. cargo test --workspace, with RILL_TEST_PYTHON pointing at the test venv
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"

step() {
    echo
    echo "==================================================================="
    echo "== $*"
    echo "==================================================================="
}

# A fresh clone's build takes about 2.2 GB (6.9 GB before the settings here and in Cargo.toml);
# a disk that fills up fails the run with "No space left on device": say how much there is.
if command -v df >/dev/null; then
    mkdir -p "${CARGO_TARGET_DIR:-$ROOT/target}"
    echo "free disk space where the build goes: $(df -Ph "${CARGO_TARGET_DIR:-$ROOT/target}" | awk 'NR == 2 { print $4 }')"
fi
# A CI run builds once from a fresh clone: incremental-compilation caches would be written and
# never read, and they are a large share of the target directory.
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi

# ---------------------------------------------------------------------------
step "1/4 install test dependencies"

APT_PACKAGES=(kcat tmux)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# python3 -m venv needs ensurepip (Debian's python3-venv) when python3 is Debian's.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing with apt-get: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" </dev/null
else
    echo "apt packages present: ${APT_PACKAGES[*]}"
fi
command -v kcat >/dev/null || { echo "kcat is still missing after install" >&2; exit 1; }
command -v tmux >/dev/null || { echo "tmux is still missing after install" >&2; exit 1; }

VENV="$ROOT/target/test-venv"
PY_REQS=(confluent-kafka==2.16.1 kafka-python==3.0.12)
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtualenv $VENV"
    mkdir -p "$ROOT/target"
    python3 -m venv "$VENV"
fi
if "$VENV/bin/python" - "${PY_REQS[@]}" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for req in sys.argv[1:]:
    name, want = req.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if have != want:
        sys.exit(1)
PYEOF
then
    echo "python packages already satisfied: ${PY_REQS[*]}"
else
    echo "installing python packages: ${PY_REQS[*]}"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-input "${PY_REQS[@]}" </dev/null
fi
"$VENV/bin/python" -c 'import confluent_kafka, kafka; print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0], "kafka-python", kafka.__version__)'
export RILL_TEST_PYTHON="$VENV/bin/python"

if [ "${RILL_SETUP_ONLY:-}" = "1" ]; then
    echo "RILL_SETUP_ONLY=1: stopping after the install step"
    exit 0
fi

# ---------------------------------------------------------------------------
step "2/4 cargo fmt --check, cargo clippy, and the fuzz targets compile"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The fuzz targets are a workspace of their own (bench/fuzz.sh runs them with cargo fuzz), so
# `--workspace` never builds them: checked here, so that they cannot stop compiling unseen.
# It shares the main target directory, so the dependencies built above (OpenSSL and librdkafka
# among them) are reused rather than built a second time.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" \
    cargo check --locked --manifest-path fuzz/Cargo.toml --bins

# ---------------------------------------------------------------------------
step "3/4 cargo build --workspace"
cargo build --workspace

# ---------------------------------------------------------------------------
step "4/4 cargo test --workspace"
RILL_TEST_PYTHON="$VENV/bin/python" cargo test --workspace </dev/null

echo
echo "run-all.sh: all steps passed"

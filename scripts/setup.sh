#!/usr/bin/env bash
# Creates (or reuses) the virtual environment .venv and installs metabench with
# everything it needs: torch, the dev tools, Ray, MuJoCo and Gymnasium, and learn2learn 0.2.0 (built from source).
# Safe to run again: it does nothing when the environment is already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.metabench-setup

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: metabench needs Python >= 3.11; '$PYTHON' is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
    exit 2
fi

# tests/test_report_browser.py opens the HTML report in Chromium; it skips where there is none.
CHROMIUM=/usr/bin/chromium

install_chromium() {
    [ -x "$CHROMIUM" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing Chromium (apt-get) for the browser test of the HTML report"
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
               DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null; then
            echo "[setup] warning: could not install Chromium; the browser test will be skipped" >&2
        fi
    else
        echo "[setup] note: no $CHROMIUM (as root: apt-get install chromium); the browser test will be skipped"
    fi
    return 0
}

wanted=$(cat pyproject.toml scripts/setup.sh scripts/install_learn2learn.sh | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY=$VENV/bin/python
echo "[setup] installing metabench and its dependencies into $VENV (torch is large: first run takes a few minutes)"
"$PY" -m pip install --quiet --upgrade pip setuptools wheel
"$PY" -m pip install --quiet -e ".[dev,ray,parquet,mujoco]"
echo "[setup] building learn2learn 0.2.0 (the reference implementation)"
bash scripts/install_learn2learn.sh "$PY"
install_chromium
echo "$wanted" > "$STAMP"
echo "[setup] done: $("$PY" -m metabench --version)"

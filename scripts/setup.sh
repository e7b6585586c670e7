#!/usr/bin/env bash
# Creates (or reuses) the virtual environment .venv and installs metabench with
# everything it needs: torch, the dev tools, Ray, and learn2learn 0.2.0 (built from source).
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
"$PY" -m pip install --quiet -e ".[dev,ray,parquet]"
echo "[setup] building learn2learn 0.2.0 (the reference implementation)"
bash scripts/install_learn2learn.sh "$PY"
echo "$wanted" > "$STAMP"
echo "[setup] done: $("$PY" -m metabench --version)"

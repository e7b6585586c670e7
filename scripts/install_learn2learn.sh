#!/usr/bin/env bash
# Builds and installs learn2learn 0.2.0 into the environment of the given Python.
# Its sdist ships C files made by an old Cython that fail on Python 3.11+
# ('longintrepr.h'), so the .pyx sources are re-cythonized with Cython 3 first.
set -euo pipefail
PY=${1:-.venv/bin/python}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute: the build runs elsewhere

if "$PY" -c 'import learn2learn' 2>/dev/null; then
    echo "[learn2learn] already importable: $("$PY" -c 'import learn2learn; print(learn2learn.__version__)')"
    exit 0
fi

BIN=$(dirname "$PY")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" -m pip install --quiet "cython>=3" setuptools wheel numpy
"$PY" -m pip download --quiet --no-deps --no-binary learn2learn learn2learn==0.2.0 -d "$WORK"
tar -xzf "$WORK"/learn2learn-0.2.0.tar.gz -C "$WORK"
(
    cd "$WORK/learn2learn-0.2.0"
    "$BIN/cython" -3 learn2learn/data/*.pyx
    "$PY" -m pip install --quiet --no-build-isolation --no-deps .
)
# The modules learn2learn imports; qpth without its deps (it would pull cvxpy), gsutil skipped.
"$PY" -m pip install --quiet torchvision gym scipy requests tqdm
"$PY" -m pip install --quiet --no-deps qpth
"$PY" -c 'import learn2learn; print("[learn2learn] installed", learn2learn.__version__)'

"""A run killed with SIGKILL loses no finished cell, and ``--resume`` completes it exactly."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from test_compare_plugin import SLEEP_ENV, compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench.store import Store

pytestmark = pytest.mark.usefixtures("compare_plugin")

TESTS = Path(__file__).resolve().parent
OPTIONS = {"algorithms": ["protonet", "interrupter", "batched"], "datasets": "micro",
           "backbone": "flat", "shots": [1], "episodes": 10, "budget": "episodes:9",
           "val_episodes": 3, "val_points": 3}
COLUMNS = ["algorithm", "seed", "episode", "accuracy", "loss"]


def as_flags(options: dict) -> list[str]:
    flags = []
    for key, value in options.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        flags += [f"--{key.replace('_', '-')}", text]
    return flags


def stored_cells(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM cells").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def wait_for_cells(path: Path, count: int, process: subprocess.Popen, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while stored_cells(path) < count:
        if process.poll() is not None:
            pytest.fail(f"compare ended early: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no finished cell after {limit_s} s")
        time.sleep(0.1)


def start_compare(out: Path) -> subprocess.Popen:
    """``metabench compare`` in a subprocess whose second cell sleeps for a minute."""
    env = {**os.environ, SLEEP_ENV: "1", "OMP_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "metabench", "--plugin", "test_compare_plugin", "compare",
            *as_flags(OPTIONS), "--out", str(out), "--no-progress"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_killed_run_resumes_to_the_uninterrupted_results(tmp_path):
    out = tmp_path / "killed"
    process = start_compare(out)
    try:
        # The second cell sleeps: kill the process while it is in there.
        wait_for_cells(out / "metabench.sqlite", 1, process, limit_s=120)
    finally:
        process.kill()
        process.wait()
    assert metabench.load_cells(out)["status"].tolist() == ["ok"]

    resumed = metabench.compare(out=out, resume=True, progress=False, **OPTIONS)
    reference = metabench.compare(out=tmp_path / "whole", progress=False, **OPTIONS)
    assert len(metabench.load_cells(out)) == 3
    pd.testing.assert_frame_equal(
        resumed[COLUMNS].sort_values(COLUMNS[:3]).reset_index(drop=True),
        reference[COLUMNS].sort_values(COLUMNS[:3]).reset_index(drop=True),
    )


def test_sigterm_marks_the_run_interrupted(tmp_path):
    process = start_compare(tmp_path)
    try:
        wait_for_cells(tmp_path / "metabench.sqlite", 1, process, limit_s=120)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "resume with `metabench compare --resume`" in stderr.decode()
    with Store.open_existing(tmp_path) as store:
        (run,) = store.runs()
        assert run.status == "interrupted" and len(store.cell_keys(run.id)) == 1

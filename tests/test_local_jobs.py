"""The local backend with ``--jobs N``: cells in worker processes give the results of
``--jobs 1`` cell for cell, failures stay failed cells, Ctrl-C ends the workers and keeps
the stored cells, and the option never changes what a run is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from test_compare_kill import stored_cells, wait_for_cells
from test_compare_plugin import SLEEP_ENV, compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench.config import make_config
from metabench.plugins import load_plugins
from metabench.store import Store

pytestmark = pytest.mark.usefixtures("compare_plugin")

TESTS = Path(__file__).resolve().parent
MICRO = {"datasets": "micro", "backbone": "flat", "shots": [1, 2], "episodes": 8,
         "budget": "episodes:6", "val_episodes": 3, "val_points": 2, "progress": False,
         "plugins": ["test_compare_plugin"]}
SCORES = ["algorithm", "ways", "shots", "seed", "episode", "accuracy", "loss"]
CELLS = ["key", "status", "reason", "steps", "train_episodes", "best_step"]


def scores(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[SCORES].sort_values(SCORES[:5]).reset_index(drop=True)


def cells(out: Path) -> pd.DataFrame:
    return metabench.load_cells(out)[CELLS].sort_values("key").reset_index(drop=True)


def test_two_jobs_give_the_results_of_one_cell_for_cell(tmp_path):
    options = {**MICRO, "algorithms": ["protonet", "boom", "batched"]}
    one = metabench.compare(out=tmp_path / "one", **options)
    two = metabench.compare(out=tmp_path / "two", jobs=2, **options)
    pd.testing.assert_frame_equal(scores(two), scores(one))
    pd.testing.assert_frame_equal(cells(tmp_path / "two"), cells(tmp_path / "one"))
    failed = cells(tmp_path / "two").set_index("key").loc["boom/micro/5w1sq15/seed0"]
    assert failed["status"] == "failed" and failed["reason"].startswith("RuntimeError in ")
    profiles = metabench.load_cells(tmp_path / "two")["profile"]
    workers = {p["worker"] for p in profiles if p.get("worker")}
    assert workers and all(w.startswith("pid ") for w in workers)  # tiny cells: often one
    assert os.getpid() not in {int(w.split()[1]) for w in workers}


def test_jobs_is_a_runtime_option_a_resumed_run_may_change(tmp_path):
    base = make_config({"algorithms": "protonet", "datasets": "micro"})
    for jobs in (2, "auto", "4"):
        assert make_config({"jobs": jobs}, base).fingerprint() == base.fingerprint()
    assert make_config({"jobs": "auto", "threads": 1}, base).job_count() == max(os.cpu_count() or 1, 1)
    assert make_config({"jobs": "auto", "threads": 4096}, base).job_count() == 1
    options = {**MICRO, "algorithms": ["protonet"]}
    first = metabench.compare(out=tmp_path, jobs=2, **options)
    again = metabench.compare(out=tmp_path, resume=True, jobs=1, **options)
    assert again.attrs["run"] == first.attrs["run"]


def test_tuning_with_two_jobs_gives_the_trials_of_one(tmp_path):
    from test_tune import trial_table

    options = {"algorithms": "protonet,batched", "datasets": "micro", "backbone": "flat",
               "shots": 1, "queries": 5, "val_episodes": 3, "val_points": 2, "trials": 3,
               "trial_budget": "episodes:6", "plugins": ["test_compare_plugin"],
               "space": ["batched.lr=log:0.0001:0.01"], "progress": False}
    one = metabench.tune(out=tmp_path / "one", **options)
    two = metabench.tune(out=tmp_path / "two", jobs=2, **options)
    pd.testing.assert_frame_equal(trial_table(two.trials), trial_table(one.trials))
    assert len(two.trials) == 2 * 3 and set(two.trials["status"]) == {"complete"}


@pytest.mark.slow
def test_a_glyphs_comparison_with_two_jobs_matches_one_job(tmp_path, monkeypatch):
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path / "cache"))
    load_plugins(["metabench.data.glyphs"])
    options = {"algorithms": ["protonet", "maml"], "datasets": "glyphs", "budget": "episodes:8",
               "episodes": 20, "val_episodes": 5, "val_points": 2, "progress": False}
    one = metabench.compare(out=tmp_path / "one", **options)
    two = metabench.compare(out=tmp_path / "two", jobs=2, **options)
    assert len(two) == 2 * 2 * 20 and two.attrs["failed"] == []
    pd.testing.assert_frame_equal(scores(two), scores(one))


def test_a_worker_that_dies_fails_its_cell_and_the_run_goes_on(tmp_path, monkeypatch):
    """``selfkiller`` sleeps in its worker until the other cells are stored; killing that
    worker process fails its cell with one line, and the run ends normally."""
    from ray_worker_plugin import PID_FILE_ENV

    marker = tmp_path / "worker.pid"
    monkeypatch.setenv(PID_FILE_ENV, str(marker))
    out = tmp_path / "out"

    def kill_when_the_others_are_stored() -> None:
        deadline = time.monotonic() + 180
        while not (marker.exists() and marker.read_text() and
                   stored_cells(out / "metabench.sqlite") >= 2):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        os.kill(int(marker.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_the_others_are_stored, daemon=True)
    killer.start()
    options = {**MICRO, "shots": [1], "algorithms": ["selfkiller", "protonet", "batched"],
               "plugins": ["test_compare_plugin", "ray_worker_plugin"]}
    frame = metabench.compare(out=out, jobs=2, **options)
    killer.join(timeout=5)
    table = metabench.load_cells(out).set_index("algorithm")
    assert table.loc["selfkiller", "status"] == "failed"
    assert table.loc["selfkiller", "reason"].startswith("worker process died ")
    assert "\n" not in table.loc["selfkiller", "reason"]
    assert list(table.loc[["protonet", "batched"], "status"]) == ["ok", "ok"]
    assert frame.attrs["failed"] == ["selfkiller/micro/5w1sq15/seed0"]


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found |= {int(word) for word in text.split()}
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_ctrl_c_ends_the_workers_and_keeps_the_stored_cells(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, SLEEP_ENV: "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "metabench", "--plugin", "test_compare_plugin", "compare",
            "-a", "interrupter,protonet,batched", "--datasets", "micro", "--backbone", "flat",
            "--shots", "1", "--episodes", "6", "--budget", "episodes:6", "--val-episodes", "2",
            "--val-points", "1", "--jobs", "2", "--out", str(out), "--no-progress"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # interrupter sleeps in its worker; the other worker finishes protonet and batched.
        wait_for_cells(out / "metabench.sqlite", 2, process, limit_s=180)
        workers = _children(process.pid)
        assert workers
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert "Traceback" not in stderr.decode()
    assert stored_cells(out / "metabench.sqlite") == 2
    with Store.open_existing(out) as store:
        assert [run.status for run in store.runs()] == ["interrupted"]
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker process outlived the run"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"

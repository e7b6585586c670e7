"""The Ray backend on a real local Ray instance (2 CPUs, no dashboard), started here and shut
down after: the same results as local, a killed worker retried, a plugin missing on the
workers failing only its cells, an interrupted driver resumed."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from test_compare_kill import TESTS, wait_for_cells
from test_compare_plugin import SLEEP_ENV

import metabench
from metabench.session import run_comparison
from metabench.store import Store

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[default]')")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

OPTIONS = {"datasets": "micro", "backbone": "flat", "shots": [1, 2], "episodes": 10,
           "budget": "episodes:6", "val_episodes": 3, "val_points": 2}
COLUMNS = ["algorithm", "shots", "seed", "episode", "accuracy", "loss"]
PID_FILE_ENV = "RAY_TEST_PID_FILE"


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """A local Ray instance whose workers import the test plugins."""
    pid_file = tmp_path_factory.mktemp("ray") / "worker.pid"
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path]), PID_FILE_ENV: str(pid_file)}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env={"env_vars": env})
    os.environ[PID_FILE_ENV] = str(pid_file)
    yield pid_file
    ray.shutdown()
    os.environ.pop(PID_FILE_ENV, None)


def scores(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[COLUMNS].sort_values(COLUMNS[:4]).reset_index(drop=True)


def test_ray_stores_exactly_the_local_results(ray_instance, tmp_path):
    options = {**OPTIONS, "algorithms": ["protonet", "batched", "noisy"],
               "plugins": ["test_compare_plugin"]}
    local = metabench.compare(out=tmp_path / "local", progress=False, **options)
    remote = metabench.compare(out=tmp_path / "ray", backend="ray", cpus_per_cell=1,
                               progress=False, **options)
    pd.testing.assert_frame_equal(scores(remote), scores(local))
    cells = metabench.load_cells(tmp_path / "ray")
    assert (cells["status"] == "ok").all() and len(cells) == 6
    assert (cells["profile.torch_threads"] == 1).all()
    assert cells["profile.worker"].str.contains(" pid ").all()


def test_a_killed_worker_is_retried_and_the_run_completes(ray_instance, tmp_path):
    pid_file = ray_instance
    pid_file.unlink(missing_ok=True)
    options = {**OPTIONS, "shots": [1], "algorithms": ["selfkiller", "protonet"],
               "plugins": ["test_compare_plugin", "ray_worker_plugin"]}

    from metabench.session import run_comparison

    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        frame=run_comparison({**options, "out": str(tmp_path), "backend": "ray"}, progress=False)))
    thread.start()
    deadline = time.monotonic() + 90
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the selfkiller cell never started"
        time.sleep(0.1)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the worker process, mid-cell
    thread.join(timeout=120)
    assert not thread.is_alive()
    cells = metabench.load_cells(tmp_path).set_index("algorithm")
    assert cells["status"].to_dict() == {"selfkiller": "ok", "protonet": "ok"}
    assert int(pid_file.read_text()) != int(cells.loc["selfkiller", "profile.worker"].split()[-1])
    assert len(metabench.load_results(tmp_path)) == 2 * 10  # each cell stored once


def test_a_plugin_missing_on_the_workers_fails_only_its_cells(ray_instance, tmp_path):
    options = {**OPTIONS, "algorithms": ["protonet", "driver-only"],
               "plugins": ["test_compare_plugin", "ray_missing_plugin"]}
    frame = metabench.compare(out=tmp_path, backend="ray", progress=False, **options)
    cells = metabench.load_cells(tmp_path).set_index("key")
    assert set(cells.loc[cells["algorithm"] == "protonet", "status"]) == {"ok"}
    failed = cells[cells["algorithm"] == "driver-only"]
    assert len(failed) == 2 and set(failed["status"]) == {"failed"}
    reason = failed["reason"].iloc[0]
    assert "unknown algorithm 'driver-only'" in reason
    assert "could not import plugin module 'ray_missing_plugin'" in reason
    assert "driver_only_dependency" in reason
    assert len(frame.attrs["failed"]) == 2


def ray_processes(exclude: str) -> list[str]:
    """Command lines of Ray's processes not belonging to the session ``exclude``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if ("raylet" in command or "gcs_server" in command) and exclude not in command:
            found.append(command[:200])
    return found


def test_an_interrupted_ray_run_resumes_with_only_the_missing_cells(ray_instance, tmp_path):
    session = ray._private.worker._global_node.get_session_dir_path()
    before = ray_processes(session)
    out = tmp_path / "stopped"
    options = {**OPTIONS, "shots": [1], "algorithms": ["protonet", "interrupter", "batched"]}
    flags = ["--algorithms", "protonet,interrupter,batched", "--datasets", "micro",
             "--backbone", "flat", "--shots", "1", "--episodes", "10", "--budget", "episodes:6",
             "--val-episodes", "3", "--val-points", "2"]
    env = {**os.environ, SLEEP_ENV: "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "metabench", "--plugin", "test_compare_plugin", "compare",
               *flags, "--backend", "ray", "--cpus-per-cell", "1", "--out", str(out),
               "--no-progress", "--no-report"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_cells(out / "metabench.sqlite", 2, process, limit_s=120)
        process.send_signal(signal.SIGTERM)  # interrupter sleeps: one cell is still running
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr.decode()[-2000:]
    with Store.open_existing(out) as store:
        (run,) = store.runs()
        assert run.status == "interrupted" and len(store.cell_keys(run.id)) == 2
    time.sleep(1)
    assert ray_processes(session) == before  # no Ray process of the stopped run is left

    resumed = run_comparison({**options, "out": str(out), "plugins": ["test_compare_plugin"]},
                             resume="latest", progress=False)
    assert resumed.ran == 1
    reference = metabench.compare(out=tmp_path / "whole", plugins=["test_compare_plugin"],
                                  progress=False, **options)
    pd.testing.assert_frame_equal(scores(resumed.episodes), scores(reference))



def test_tuning_on_ray_gives_the_local_trials(ray_instance, tmp_path):
    from test_tune import trial_table

    options = {"algorithms": "protonet,batched", "datasets": "micro", "backbone": "flat",
               "shots": 1, "queries": 5, "val_episodes": 3, "val_points": 2, "trials": 3,
               "trial_budget": "episodes:6", "plugins": ["test_compare_plugin"],
               "space": ["batched.lr=log:0.0001:0.01"], "progress": False}
    local = metabench.tune(out=tmp_path / "local", **options)
    remote = metabench.tune(out=tmp_path / "ray", backend="ray", cpus_per_cell=1, **options)
    pd.testing.assert_frame_equal(trial_table(remote.trials), trial_table(local.trials))
    assert len(remote.trials) == 2 * 3 and set(remote.trials["status"]) == {"complete"}


def test_the_warm_up_keeps_the_plans_data_sets_in_the_worker_process(ray_instance):
    """What a warm-up task does, here in this process: plugins, then every data set of the
    plan into the per-process cache the cells read, without running algorithm code."""
    from metabench.backends import worker
    from metabench.config import make_config

    config = make_config({**OPTIONS, "algorithms": ["protonet"],
                          "plugins": ["test_compare_plugin"]})
    worker._DATASETS.clear()
    assert worker.warm_worker(config).startswith("warmed 2 data set setting(s) in pid ")
    assert [key[0] for key in worker._DATASETS] == ["micro"]
    cached = next(iter(worker._DATASETS.values()))
    assert worker.cell_dataset("micro", "micro", config) is cached  # what a cell gets
    broken = make_config({**OPTIONS, "algorithms": ["no-such-algorithm"]})
    assert worker.warm_worker(broken).startswith("not warmed: ")


def test_a_backend_warms_one_worker_per_cpu_slot_and_closing_lets_them_finish(ray_instance):
    """Closing never cancels a warm-up: in Ray 2.60 a cancel racing the task's completion
    ends the driver process (ray-project/ray#54846); under load it once ended this suite."""
    from metabench.backends.ray import RayBackend
    from metabench.config import make_config

    backend = RayBackend(make_config({**OPTIONS, "algorithms": ["protonet"],
                                      "plugins": ["test_compare_plugin"], "backend": "ray"}))
    warming = list(backend.warming)
    backend.close()  # at once, while the warm-ups start
    assert backend.warming == []
    outcomes = ray.get(warming, timeout=120)
    assert len(outcomes) == 2 and all(o.startswith("warmed ") for o in outcomes), outcomes

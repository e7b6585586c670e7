"""Every script in benchmarks/ runs in its ``--quick`` mode, prints one JSON object with its
context and finite figures, and exits 0; a timed cell that fails makes it exit non-zero.

A refactor that breaks a benchmark fails here, not months later on a long run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
CONTEXT_KEYS = {"cpus", "torch_threads", "load_average_start", "load_average_end", "device",
                "python", "torch", "learn2learn", "metabench"}
SCRIPTS = ("algorithms.py", "glyphs_calibration.py", "gpu.py", "overhead.py", "reports.py", "rl.py",
           "sampler.py",
           "scaling.py", "training.py")


def run_script(name: str, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *arguments],
                          capture_output=True, text=True, timeout=timeout, env=env)


def quick(name: str, *arguments: str) -> dict:
    """The script's --quick JSON, after checking its exit status, context and numbers."""
    done = run_script(name, "--quick", "--json", *arguments)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["ok"] is True and "problems" not in result, result
    assert set(result["context"]) >= CONTEXT_KEYS, result["context"]
    assert result["context"]["quick"] is True
    assert all(math.isfinite(x) for x in numbers(result)), result
    return result


def numbers(value: object) -> list[float]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for item in value.values() for x in numbers(item)]
    if isinstance(value, list):
        return [x for item in value for x in numbers(item)]
    return []


def test_every_script_is_tested_here():
    scripts = {path.name for path in BENCHMARKS.glob("*.py") if not path.stem.startswith("_")}
    assert scripts == set(SCRIPTS)


def test_algorithms_quick():
    result = quick("algorithms.py")
    assert result["train_step_ratio"] > 0 and result["eval_speedup"] > 0
    assert result["max_logit_difference"] < 1e-2  # the same function, float32 rounding
    assert set(result["algorithms"]) == {"protonet", "matchingnet", "anil", "metasgd", "baseline",
                                         "baseline-pp"}
    for row in result["versus_learn2learn"].values():
        assert row["train_step_ratio"] > 0 and row["eval_speedup"] > 0


def test_glyphs_calibration_quick():
    result = quick("glyphs_calibration.py")
    assert result["train"]["steps"] == 5 and result["test_episodes"] == 10
    assert 0.0 <= result["trained"]["5w1s"]["accuracy"] <= 1.0


def test_training_quick_times_every_cell():
    result = quick("training.py", "--steps", "1")
    assert set(result["cells"]) == {"protonet_60way", "maml_metabatch32", "maml_conv4_metabatch8"}
    assert all(cell["episodes_per_s"] > 0 for cell in result["cells"].values())


def test_training_unknown_case_is_one_line():
    done = run_script("training.py", "--quick", "--cases", "nope")
    assert done.returncode != 0 and done.stderr.strip().splitlines() == [
        "error: unknown case 'nope'; expected one of protonet_60way, maml_metabatch32, "
        "maml_conv4_metabatch8"]


def test_overhead_quick_every_cell_ok():
    result = quick("overhead.py")
    assert set(result["cells"].values()) == {"ok"} and len(result["cells"]) == 2
    assert 0.0 < result["overhead_share"] < 1.0
    assert 0.0 < result["algorithm_s"] < result["wall_s"]
    assert result["not_instrumented"] == []


def test_overhead_exits_non_zero_when_a_timed_cell_fails():
    """The ``broken`` algorithm of the hardening plugin raises in its first training step."""
    done = run_script("overhead.py", "--quick", "--json", "--algorithms", "broken",
                      "--plugin", "hardening_plugin")
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["ok"] is False and result["cells"] == {"broken/glyphs/5w1sq15/seed0": "failed"}
    assert "error: cell broken/glyphs/5w1sq15/seed0 failed: RuntimeError" in done.stderr
    assert "broken on purpose" in done.stderr


def test_algorithms_exits_non_zero_when_a_timed_algorithm_fails():
    done = run_script("algorithms.py", "--quick", "--json", "--algorithms", "broken", "--versus", "",
                      "--plugin", "hardening_plugin")
    assert done.returncode != 0
    assert "broken on purpose" in done.stderr


def test_reports_quick():
    result = quick("reports.py")
    assert result["episodes"] == 200
    for name in ("leaderboard_s", "report_s", "cli_leaderboard_s", "cli_report_s"):
        assert result[name] > 0


def test_rl_quick_prints_every_figure():
    result = quick("rl.py")
    assert result["maml_rl_meta_step_s"] > 0
    for name in ("navigation2d", "velocity1d"):
        assert result[name]["env_steps_per_s"] > 0 and result[name]["rollout_steps_per_s"] > 0
    cheetah = result["halfcheetah"]
    if all(importlib.util.find_spec(name) for name in ("mujoco", "gymnasium")):
        assert cheetah["batch"] == 4 and cheetah["maml_rl_meta_step_s"] > 0
        for key in ("env_steps_per_s", "rollout_steps_per_s", "mjdata_loop_steps_per_s",
                    "gymnasium_vector_steps_per_s"):
            assert cheetah[key] > 0, key
    else:
        assert cheetah.startswith("skipped: the mujoco extra is not installed")


def test_sampler_quick():
    result = quick("sampler.py")
    assert result["metabench_per_s"] > 0
    if result["learn2learn_per_s"] is not None:
        assert result["ratio"] == pytest.approx(result["metabench_per_s"] / result["learn2learn_per_s"],
                                                rel=0.01)


@pytest.mark.ray
def test_scaling_quick():
    pytest.importorskip("ray")
    result = quick("scaling.py")
    assert set(result["cells_per_min"]) == {"local", "ray_1", "ray_2"}
    assert result["speedup_2_workers"] > 0 and result["context"]["ray"]
    assert len(result["ray_1_worker_cell_s"]) == 2


def test_gpu_quick():
    result = quick("gpu.py")
    import torch

    if not torch.cuda.is_available():
        assert result["skipped"] == "no CUDA"
        result = result["cpu_dry_run"]
        assert result["estimate"]["algorithms"] == ["maml"]
    assert result["timing"]["timer_s"] > 0
    assert result["peak_memory"]["relative_error"] <= result["peak_memory"]["tolerance"]
    assert result["maml_training"]["train_step_s"]["metabench"] > 0
    assert result["evaluation"]["episodes_per_s"]["metabench"] > 0


# --- the shared helper ----------------------------------------------------------------------


@pytest.fixture
def shared(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _shared

    return _shared


def test_finish_fails_on_a_figure_that_is_not_finite(shared, capsys):
    assert shared.finish({"a": {"b": [1.0, float("nan")]}, "c": float("inf")}) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["problems"] == ["a.b[1] is not a finite number", "c is not a finite number"]
    assert "error: a.b[1] is not a finite number" in err


def test_finish_fails_on_a_reported_failure_and_passes_clean_figures(shared, capsys):
    assert shared.finish({"x": 1.0}, ["cell k failed"]) == 1
    assert shared.finish({"x": 1.0, "flag": True, "none": None}) == 0
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert last["ok"] is True and set(last["context"]) >= CONTEXT_KEYS


def test_positive_names_each_figure_at_or_below_zero(shared):
    assert shared.positive({"a": 1.0, "b": 0.0, "c": -1, "d": None, "e": True}) == [
        "b = 0.0 is not a positive number", "c = -1 is not a positive number",
        "d = None is not a positive number", "e = True is not a positive number"]


def test_shared_helper_gives_every_script_quick_and_json():
    """benchmarks/_shared.py is the helper, not a script: the --quick and --json flags every
    script takes come from it."""
    spec = importlib.util.spec_from_file_location("_shared", BENCHMARKS / "_shared.py")
    assert spec is not None and spec.loader is not None
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    import argparse

    parser = argparse.ArgumentParser()
    shared.add_common_arguments(parser)
    assert vars(parser.parse_args(["--quick", "--json"])) == {"quick": True, "json": True}

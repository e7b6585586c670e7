"""Cells per minute on the Ray backend with 1 (and 2) workers, and on the local backend.

The same plan runs on each: CPU-bound cells (Prototypical Networks on glyphs, one torch
thread each, an episode budget sized so one cell takes about ``--cell-seconds`` on this
machine), locally, then on a local Ray instance with 1 CPU (one worker at a time), and with
``--two-workers`` on one with 2 CPUs (two workers). Ray's start-up is outside the timed
part; worker start-up, imports and data set loading on the workers are inside it (they are
Ray's cost).

    python benchmarks/scaling.py --json                 # local and ray_1: about 5 minutes
    python benchmarks/scaling.py --json --two-workers   # also ray_2 (2 more minutes)
    python benchmarks/scaling.py --json --budget episodes:200   # fixed cells, no calibration
    python benchmarks/scaling.py --json --quick         # tiny cells; the tests run it

prints one JSON object: ``cells_per_min`` for ``local``, ``ray_1`` (and ``ray_2``),
``ray_overhead_share`` (seconds per cell on Ray with 1 worker over local, minus 1; target
under 0.05 for 30 s cells), ``speedup_2_workers`` (ray_2 over ray_1; target >= 1.6 on 2
cores; with --two-workers), ``ray_1_worker_cell_s`` (each cell's time inside its worker, in
start order), with the budget, cells and context. Exits 1 when a cell fails or
a figure is not finite.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _shared import add_common_arguments, finish, version

import metabench

ALGORITHM = "protonet"


def options(budget: str, cells: int, episodes: int) -> dict:
    """A plan of ``cells`` protonet cells (one per seed) on glyphs 5-way 1-shot."""
    return {"algorithms": [ALGORITHM], "datasets": "glyphs", "shots": [1],
            "seeds": list(range(cells)), "budget": budget, "episodes": episodes,
            "val_episodes": 10, "val_points": 1, "progress": False}


def calibrate(target_s: float, test_episodes: int, folder: Path, failures: list[str]) -> str:
    """An episode budget that makes one cell take about ``target_s`` on one thread: the
    marginal time per training episode from two probes, after the cell's fixed costs."""
    seconds = {}
    for probe in (50, 250):
        plan = options(f"episodes:{probe}", 1, test_episodes)
        seconds[probe] = timed(lambda plan=plan, probe=probe: metabench.compare(
            out=folder / f"probe{probe}", **plan), f"probe {probe}", failures)
    per_episode = max((seconds[250] - seconds[50]) / 200, 1e-6)
    fixed = seconds[50] - 50 * per_episode
    return f"episodes:{max(10, int((target_s - fixed) / per_episode))}"


def timed(run: Callable[[], Any], name: str, failures: list[str]) -> float:
    """Seconds of ``run`` (a comparison); each of its cells that did not finish is a failure."""
    start = time.perf_counter()
    frame = run()
    seconds = time.perf_counter() - start
    failures += [f"{name}: cell {key} failed" for key in frame.attrs["failed"]]
    if frame.empty:
        failures.append(f"{name}: no test episode was stored")
    return seconds


def ray_seconds(cpus: int, plan: dict, folder: Path, failures: list[str]) -> float:
    """Wall time of the plan on a local Ray instance with ``cpus`` CPUs (start-up excluded)."""
    import ray

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
    try:
        return timed(lambda: metabench.compare(out=folder, backend="ray", cpus_per_cell=1, **plan),
                     f"ray with {cpus} CPUs", failures)
    finally:
        ray.shutdown()


def worker_cell_seconds(folder: Path) -> list[float]:
    """Each cell's wall time inside its Ray worker, in the order the cells started: a first
    cell much slower than the rest is a worker that was not warm."""
    cells = metabench.load_cells(folder).sort_values("started")
    return [round(float(s), 2) for s in cells["profile.worker_wall_s"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell-seconds", type=float, default=30.0)
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--test-episodes", type=int, default=50)
    parser.add_argument("--two-workers", action="store_true", help="also Ray with 2 CPUs")
    parser.add_argument("--budget", help="each cell's budget (e.g. episodes:200) instead of "
                        "calibrating one to --cell-seconds: the same work on every machine")
    add_common_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.quick:  # no calibration: tiny fixed cells, both Ray sizes
            budget, args.cells, args.test_episodes, args.two_workers = "episodes:5", 2, 5, True
        elif args.budget:
            budget = args.budget
        else:
            budget = calibrate(args.cell_seconds, args.test_episodes, folder, failures)
        plan = options(budget, args.cells, args.test_episodes)
        seconds = {"local": timed(lambda: metabench.compare(out=folder / "local", **plan), "local",
                                  failures),
                   "ray_1": ray_seconds(1, plan, folder / "ray1", failures)}
        worker_s = worker_cell_seconds(folder / "ray1")
        if args.two_workers:
            seconds["ray_2"] = ray_seconds(2, plan, folder / "ray2", failures)
    record = {
        "cells_per_min": {name: round(60.0 * args.cells / s, 3) for name, s in seconds.items()},
        "seconds": {name: round(s, 2) for name, s in seconds.items()},
        "ray_overhead_share": round(seconds["ray_1"] / seconds["local"] - 1.0, 4),
        "local_cell_s": round(seconds["local"] / args.cells, 2),
        "ray_overhead_s_per_cell": round((seconds["ray_1"] - seconds["local"]) / args.cells, 2),
        "ray_1_worker_cell_s": worker_s,
        "cells": args.cells, "budget": budget, "cell_seconds_target": args.cell_seconds,
        "test_episodes": args.test_episodes,
    }
    if "ray_2" in seconds:
        record["speedup_2_workers"] = round(seconds["ray_1"] / seconds["ray_2"], 3)
    return finish(record, failures, as_json=args.json, quick=args.quick,
                  ray=version("ray"))


if __name__ == "__main__":
    sys.exit(main())

"""Cells per minute on the Ray backend with 1 and 2 workers, and on the local backend.

The same plan runs three times: CPU-bound cells (Prototypical Networks on glyphs, one torch
thread each, an episode budget sized so one cell takes about ``--cell-seconds`` on this
machine), locally, then on a local Ray instance with 1 CPU (one worker at a time), then
with 2 CPUs (two workers). Ray's start-up is outside the timed part; worker start-up,
imports and data set loading on the workers are inside it (they are Ray's cost).

    python benchmarks/scaling.py --json

prints one JSON object: ``cells_per_min`` for ``local``, ``ray_1`` and ``ray_2``,
``speedup_2_workers`` (ray_2 over ray_1; target >= 1.6 on 2 cores), and
``ray_overhead_share`` (seconds per cell on Ray with 1 worker over local, minus 1; target
under 0.05 for 30 s cells), with the budget, cells and context.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import metabench

ALGORITHM = "protonet"


def options(budget: str, cells: int, episodes: int) -> dict:
    """A plan of ``cells`` protonet cells (one per seed) on glyphs 5-way 1-shot."""
    return {"algorithms": [ALGORITHM], "datasets": "glyphs", "shots": [1],
            "seeds": list(range(cells)), "budget": budget, "episodes": episodes,
            "val_episodes": 10, "val_points": 1, "progress": False}


def calibrate(target_s: float, test_episodes: int, folder: Path) -> str:
    """An episode budget that makes one cell take about ``target_s`` on one thread: the
    marginal time per training episode from two probes, after the cell's fixed costs."""
    seconds = {}
    for probe in (50, 250):
        plan = options(f"episodes:{probe}", 1, test_episodes)
        seconds[probe] = timed(lambda plan=plan, probe=probe: metabench.compare(
            out=folder / f"probe{probe}", **plan))
    per_episode = (seconds[250] - seconds[50]) / 200
    fixed = seconds[50] - 50 * per_episode
    return f"episodes:{max(10, int((target_s - fixed) / per_episode))}"


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def ray_seconds(cpus: int, plan: dict, folder: Path) -> float:
    """Wall time of the plan on a local Ray instance with ``cpus`` CPUs (start-up excluded)."""
    import ray

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
    try:
        return timed(lambda: metabench.compare(out=folder, backend="ray", cpus_per_cell=1, **plan))
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell-seconds", type=float, default=30.0)
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--test-episodes", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        budget = calibrate(args.cell_seconds, args.test_episodes, folder)
        plan = options(budget, args.cells, args.test_episodes)
        local_s = timed(lambda: metabench.compare(out=folder / "local", **plan))
        ray_1_s = ray_seconds(1, plan, folder / "ray1")
        ray_2_s = ray_seconds(2, plan, folder / "ray2")
    per_min = {name: round(60.0 * args.cells / seconds, 3)
               for name, seconds in (("local", local_s), ("ray_1", ray_1_s), ("ray_2", ray_2_s))}
    record = {
        "cells_per_min": per_min, "seconds": {"local": round(local_s, 2), "ray_1": round(ray_1_s, 2),
                                              "ray_2": round(ray_2_s, 2)},
        "speedup_2_workers": round(ray_1_s / ray_2_s, 3),
        "ray_overhead_share": round(ray_1_s / local_s - 1.0, 4),
        "local_cell_s": round(local_s / args.cells, 2),
        "ray_overhead_s_per_cell": round((ray_1_s - local_s) / args.cells, 2),
        "cells": args.cells, "budget": budget, "cell_seconds_target": args.cell_seconds,
        "test_episodes": args.test_episodes, "cpus": os.cpu_count(),
        "load_1min": os.getloadavg()[0], "metabench": metabench.__version__,
    }
    print(json.dumps(record) if args.json else json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

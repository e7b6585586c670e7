"""The harness's own cost: the share of a compare run's wall time spent outside algorithm code.

Runs one ``metabench.compare`` (then its leaderboard statistics) with the algorithms'
construction, ``meta_train_step`` and ``predict`` wrapped in timers; everything else
(planning, data loading, episode sampling, validation bookkeeping, weight snapshots,
storage, statistics) is overhead. Sampling and storage are also timed on their own.

    python benchmarks/overhead.py --json
    python benchmarks/overhead.py --json --algorithms maml,protonet --budget time:30s
    python benchmarks/overhead.py --json --device cuda

Prints ONE JSON object with ``overhead_share`` (target: at most 0.03) and the parts.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

import metabench
from metabench import evaluation, runner, session
from metabench.episodes import EpisodeSampler
from metabench.plugins import load_plugins
from metabench.reports.leaderboard import leaderboard
from metabench.store import Store

TARGET = 0.03
PARTS = ("sampling", "storage", "data", "environment", "snapshots", "scoring")


class Clock:
    """Seconds spent in wrapped calls, by name; nested calls of one name count once."""

    def __init__(self, device: torch.device) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._depth: dict[str, int] = {}
        self._sync = device.type == "cuda"

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` timed under ``name``."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth.get(name):
                return function(*args, **kwargs)
            self._depth[name] = 1
            start = time.perf_counter()
            try:
                result = function(*args, **kwargs)
                if self._sync:  # queued GPU work belongs to the call that queued it
                    torch.cuda.synchronize()
                return result
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                self.calls[name] = self.calls.get(name, 0) + 1
                self._depth[name] = 0

        return timed


def instrument(clock: Clock) -> None:
    """Wrap algorithm construction and methods, episode sampling and cell storage."""
    build = runner.build_algorithm

    def build_timed(cell: Any, context: Any) -> Any:
        algorithm = clock.wrap("algorithm", build)(cell, context)
        for method in ("meta_train_step", "predict"):
            setattr(algorithm, method, clock.wrap("algorithm", getattr(algorithm, method)))
        return algorithm

    runner.build_algorithm = build_timed
    EpisodeSampler.batch = clock.wrap("sampling", EpisodeSampler.batch)
    EpisodeSampler.episode = clock.wrap("sampling", EpisodeSampler.episode)
    Store.save_cell = clock.wrap("storage", Store.save_cell)
    session.build_datasets = clock.wrap("data", session.build_datasets)
    session._record_environment = clock.wrap("environment", session._record_environment)
    runner.copy.deepcopy = clock.wrap("snapshots", runner.copy.deepcopy)
    evaluation.episode_scores = clock.wrap("scoring", evaluation.episode_scores)


def measure(options: dict[str, Any]) -> dict[str, Any]:
    """Run the comparison and split its wall time into algorithm and harness time."""
    device = metabench.profiling.resolve_device(options.get("device") or "auto")
    clock = Clock(device)
    instrument(clock)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = session.run_comparison({**options, "out": out}, progress=False)
        stats_start = time.perf_counter()
        table = leaderboard(outcome.episodes, outcome.cells)
        end = time.perf_counter()
    wall, algorithm = end - start, clock.seconds.get("algorithm", 0.0)
    return {
        "overhead_share": (wall - algorithm) / wall,
        "target": TARGET,
        "wall_s": wall,
        "algorithm_s": algorithm,
        "overhead_s": wall - algorithm,
        "parts_s": {
            **{name: clock.seconds.get(name, 0.0) for name in PARTS},
            "statistics": end - stats_start,
        },
        "calls": clock.calls,
        "cells": {row.key: row.status for row in outcome.cells.itertuples()},
        "leaderboard_rows": len(table),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "options": options,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--algorithms", default="maml,protonet")
    parser.add_argument("--datasets", default="glyphs")
    parser.add_argument("--shots", default="1")
    parser.add_argument("--budget", default="episodes:400")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--val-episodes", type=int, default=40)
    parser.add_argument("--val-points", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--plugin", action="append", default=[], help="plugin module to load")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    load_plugins(args.plugin)
    options = {
        "algorithms": args.algorithms, "datasets": args.datasets, "shots": args.shots,
        "budget": args.budget, "episodes": args.episodes, "val_episodes": args.val_episodes,
        "val_points": args.val_points, "device": args.device,
    }
    print(json.dumps(measure(options), indent=2))


if __name__ == "__main__":
    main()

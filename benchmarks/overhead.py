"""The harness's own cost: the share of a compare run's wall time spent outside algorithm code.

Runs one ``metabench.compare`` (then its leaderboard statistics) with the algorithms'
construction, ``meta_train_step`` and ``predict`` wrapped in timers; everything else
(planning, data loading, episode sampling, validation bookkeeping, weight snapshots,
storage, statistics) is overhead. Sampling and storage are also timed on their own.

    python benchmarks/overhead.py --json
    python benchmarks/overhead.py --json --algorithms maml,protonet --budget time:30s
    python benchmarks/overhead.py --json --device cuda
    python benchmarks/overhead.py --quick --json     # seconds; the test suite runs it

Prints ONE JSON object with ``overhead_share`` (target: at most 0.01) and the parts; exits 1
when a cell fails (its time would not be algorithm time) or a figure is not finite.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from _shared import add_common_arguments, finish

import metabench
from metabench import evaluation, registry, session
from metabench.episodes import EpisodeSampler
from metabench.plugins import load_plugins
from metabench.reports.leaderboard import leaderboard
from metabench.store import Store

TARGET = 0.01
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


def instrument(clock: Clock) -> list[str]:
    """Wrap algorithm construction and methods, episode sampling and cell storage; returns the
    parts that could not be wrapped (moved or renamed in the harness)."""
    lookup = registry.get

    def timed_entry(kind: str, name: str) -> Any:
        entry = lookup(kind, name)
        if kind != "algorithm":
            return entry
        build = clock.wrap("algorithm", entry.factory)

        def built(*args: Any, **kwargs: Any) -> Any:
            algorithm = build(*args, **kwargs)
            for method in ("meta_train_step", "predict"):
                setattr(algorithm, method, clock.wrap("algorithm", getattr(algorithm, method)))
            return algorithm

        return dataclasses.replace(entry, factory=built)

    registry.get = timed_entry  # type: ignore[assignment]
    targets = [(EpisodeSampler, "batch", "sampling"), (EpisodeSampler, "episode", "sampling"),
               (Store, "save_cell", "storage"), (session, "build_datasets", "data"),
               (session, "_record_environment", "environment"), (copy, "deepcopy", "snapshots"),
               (evaluation, "episode_scores", "scoring")]
    missing = []
    for owner, attribute, part in targets:
        if hasattr(owner, attribute):
            setattr(owner, attribute, clock.wrap(part, getattr(owner, attribute)))
        else:
            missing.append(f"{getattr(owner, '__name__', owner)}.{attribute}")
    return missing


def measure(options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Run the comparison and split its wall time into algorithm and harness time; also
    return the failures (failed cells) that make the figure meaningless."""
    device = metabench.profiling.resolve_device(options.get("device") or "auto")
    clock = Clock(device)
    not_wrapped = instrument(clock)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = session.run_comparison({**options, "out": out}, progress=False)
        stats_start = time.perf_counter()
        table = leaderboard(outcome.episodes, outcome.cells)
        end = time.perf_counter()
    wall, algorithm = end - start, clock.seconds.get("algorithm", 0.0)
    cells = {row.key: row.status for row in outcome.cells.itertuples()}
    failures = [f"cell {key} {status}: {_reason(outcome.cells, key)}"
                for key, status in cells.items() if status != "ok"]
    if not cells:
        failures.append("no cell ran")
    if algorithm <= 0.0:
        failures.append("no algorithm time was measured (the timers wrapped nothing)")
    result = {
        "overhead_share": (wall - algorithm) / wall,
        "target": TARGET,
        "meets_target": (wall - algorithm) / wall <= TARGET,
        "wall_s": wall,
        "algorithm_s": algorithm,
        "overhead_s": wall - algorithm,
        "parts_s": {
            **{name: clock.seconds.get(name, 0.0) for name in PARTS},
            "statistics": end - stats_start,
        },
        "calls": clock.calls,
        "not_instrumented": not_wrapped,
        "cells": cells,
        "leaderboard_rows": len(table),
        "device": str(device),
        "options": options,
    }
    return result, failures


def _reason(cells: Any, key: str) -> str:
    row = cells.loc[cells["key"] == key]
    return str(row["reason"].iloc[0]) if "reason" in row and len(row) else "(no reason stored)"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--algorithms", default="maml,protonet")
    parser.add_argument("--datasets", default="glyphs")
    parser.add_argument("--shots", default="1")
    parser.add_argument("--budget", default="episodes:400")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--val-episodes", type=int, default=40)
    parser.add_argument("--val-points", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--plugin", action="append", default=[], help="plugin module to load")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.episodes, args.val_episodes, args.val_points = "episodes:8", 20, 4, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    load_plugins(args.plugin)
    options = {
        "algorithms": args.algorithms, "datasets": args.datasets, "shots": args.shots,
        "budget": args.budget, "episodes": args.episodes, "val_episodes": args.val_episodes,
        "val_points": args.val_points, "device": args.device, "plugins": args.plugin,
    }
    result, failures = measure(options)
    return finish(result, failures, as_json=args.json, device=result["device"], quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())

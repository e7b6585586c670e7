"""Seconds to build a leaderboard and an HTML report from a store of 10,000 test episodes.

The store is written directly (no training): 5 algorithms x 2 settings x 2 seeds x 500
test episodes, with per-cell profiles and learning curves like a real run's. Each step is
timed ``--repeat`` times in this process; the median is compared with the target (5 s on 2
cores):

    python benchmarks/reports.py --json

prints one JSON object: ``leaderboard_s`` and ``report_s`` (medians, in this process),
``cli_leaderboard_s`` and ``cli_report_s`` (the commands, start-up and imports included),
``*_ratio`` (median / target: below 1 meets it), ``episodes``, and context.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import metabench
from metabench.records import CellRow, EpisodeRow
from metabench.store import Store

TARGET_S = 5.0
ALGORITHMS = ("maml", "fomaml", "protonet", "reptile", "anil")
SHOTS = (1, 5)
SEEDS = (0, 1)
EPISODES = 500


def build_store(folder: Path) -> int:
    """A store of one run with 10,000 test episodes; returns the episode count."""
    rng = np.random.default_rng(0)
    config = {"algorithms": list(ALGORITHMS), "datasets": ["glyphs"], "ways": [5],
              "shots": list(SHOTS), "queries": 15, "episodes": EPISODES, "seeds": list(SEEDS),
              "budget": "episodes:1000", "val_episodes": 40, "val_points": 4, "hparams": {}}
    environment = {"metabench": metabench.__version__, "torch": "synthetic", "device": "cpu"}
    with Store.open(folder) as store:
        run = store.create_run("synthetic", "benchmark", config, environment)
        for shots in SHOTS:
            for seed in SEEDS:
                for k, algorithm in enumerate(ALGORITHMS):
                    _save_cell(store, run, algorithm, shots, seed, 0.5 + 0.05 * k, rng)
        store.set_run_status(run, "complete")
    return len(ALGORITHMS) * len(SHOTS) * len(SEEDS) * EPISODES


def _save_cell(store: Store, run: str, algorithm: str, shots: int, seed: int, level: float,
               rng: np.random.Generator) -> None:
    key = f"{algorithm}/glyphs/5w{shots}sq15/seed{seed}"
    curve = [{"step": 250 * i, "episodes": 250 * i, "seconds": 3.0 * i, "train_loss": 1.0 / i,
              "val_accuracy": level - 0.1 / i, "val_loss": 1.0 / i} for i in range(1, 5)]
    profile = {"train_time_s": 12.0 + rng.random(), "adapt_median_s": 0.01 * (1 + rng.random()),
               "peak_memory_train_mb": 900 + 100 * rng.random(),
               "peak_memory_eval_mb": 800 + 100 * rng.random()}
    row = CellRow(key, algorithm, "glyphs", "classification", 5, shots, 15, seed, "conv4",
                  budget="episodes:1000", steps=250, train_episodes=1000, best_step=1000,
                  device="cpu", profile=profile, hparams={"lr": 0.001}, curve=curve)
    accuracy = np.clip(rng.normal(level, 0.1, EPISODES), 0, 1)
    episodes = [EpisodeRow(i, float(a), None, float(1 - a)) for i, a in enumerate(accuracy)]
    store.save_cell(run, row, episodes)


def median_seconds(step: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``step`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder)
        episodes = build_store(results)
        leaderboard_s = median_seconds(lambda: metabench.leaderboard(results), args.repeat)
        report_s = median_seconds(lambda: metabench.report(results, results / "r.html"),
                                  args.repeat)
        cli = [sys.executable, "-m", "metabench"]
        cli_leaderboard_s = median_seconds(lambda: subprocess.run(
            [*cli, "leaderboard", str(results), "-o", str(results / "l.md")], check=True,
            capture_output=True), args.repeat)
        cli_report_s = median_seconds(lambda: subprocess.run(
            [*cli, "report", str(results), "-o", str(results / "c.html")], check=True,
            capture_output=True), args.repeat)
    record = {
        "episodes": episodes, "leaderboard_s": round(leaderboard_s, 3),
        "report_s": round(report_s, 3), "target_s": TARGET_S,
        "leaderboard_ratio": round(leaderboard_s / TARGET_S, 3),
        "report_ratio": round(report_s / TARGET_S, 3),
        "cli_leaderboard_s": round(cli_leaderboard_s, 3), "cli_report_s": round(cli_report_s, 3),
        "cli_leaderboard_ratio": round(cli_leaderboard_s / TARGET_S, 3),
        "cli_report_ratio": round(cli_report_s / TARGET_S, 3), "repeat": args.repeat,
        "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
        "python": platform.python_version(), "metabench": metabench.__version__,
    }
    if args.json:
        print(json.dumps(record))
    else:
        json.dump(record, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()

"""Seconds to build a leaderboard and an HTML report from a store of 10,000 test episodes.

The store is written directly (no training): 5 algorithms x 2 settings x 2 seeds x 500
test episodes, with per-cell profiles and learning curves like a real run's. Each step is
timed ``--repeat`` times in this process; the median is compared with the target (2 s on 2
cores):

    python benchmarks/reports.py --json
    python benchmarks/reports.py --json --quick     # 200 episodes, once; the tests run it

prints one JSON object: ``leaderboard_s`` and ``report_s`` (medians, in this process),
``cli_leaderboard_s`` and ``cli_report_s`` (the commands, start-up and imports included),
``*_ratio`` (median / target: below 1 meets it), ``episodes``, and context; exits 1 when a
command fails or a figure is not a positive finite number.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _shared import add_common_arguments, finish, positive

import metabench
from metabench.records import CellRow, EpisodeRow
from metabench.store import Store

TARGET_S = 2.0  # issue 24: `metabench report` on 10,000 episodes under 2 s as a command
ALGORITHMS = ("maml", "fomaml", "protonet", "reptile", "anil")
SHOTS = (1, 5)
SEEDS = (0, 1)
EPISODES = 500


def build_store(folder: Path, per_cell: int = EPISODES) -> int:
    """A store of one run with ``per_cell`` test episodes per cell (10,000 in all by default);
    returns the episode count."""
    rng = np.random.default_rng(0)
    config = {"algorithms": list(ALGORITHMS), "datasets": ["glyphs"], "ways": [5],
              "shots": list(SHOTS), "queries": 15, "episodes": per_cell, "seeds": list(SEEDS),
              "budget": "episodes:1000", "val_episodes": 40, "val_points": 4, "hparams": {}}
    environment = {"metabench": metabench.__version__, "torch": "synthetic", "device": "cpu"}
    with Store.open(folder) as store:
        run = store.create_run("synthetic", "benchmark", config, environment)
        for shots in SHOTS:
            for seed in SEEDS:
                for k, algorithm in enumerate(ALGORITHMS):
                    _save_cell(store, run, algorithm, shots, seed, 0.5 + 0.05 * k, rng, per_cell)
        store.set_run_status(run, "complete")
    return len(ALGORITHMS) * len(SHOTS) * len(SEEDS) * per_cell


def _save_cell(store: Store, run: str, algorithm: str, shots: int, seed: int, level: float,
               rng: np.random.Generator, per_cell: int) -> None:
    key = f"{algorithm}/glyphs/5w{shots}sq15/seed{seed}"
    curve = [{"step": 250 * i, "episodes": 250 * i, "seconds": 3.0 * i, "train_loss": 1.0 / i,
              "val_accuracy": level - 0.1 / i, "val_loss": 1.0 / i} for i in range(1, 5)]
    profile = {"train_time_s": 12.0 + rng.random(), "adapt_median_s": 0.01 * (1 + rng.random()),
               "peak_memory_train_mb": 900 + 100 * rng.random(),
               "peak_memory_eval_mb": 800 + 100 * rng.random()}
    row = CellRow(key=key, algorithm=algorithm, dataset="glyphs", test_dataset="glyphs",
                  task_type="classification", ways=5, shots=shots, queries=15, seed=seed,
                  backbone="conv4", budget="episodes:1000", steps=250, train_episodes=1000, best_step=1000,
                  device="cpu", profile=profile, hparams={"lr": 0.001}, curve=curve)
    accuracy = np.clip(rng.normal(level, 0.1, per_cell), 0, 1)
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


def command_seconds(command: list[str], repeat: int, failures: list[str]) -> float:
    """The median wall time of a ``metabench`` command; a failed run is added to ``failures``."""

    def run() -> None:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            failures.append(f"{' '.join(command[2:4])} exited {done.returncode}: {last}")

    return median_seconds(run, repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    add_common_arguments(parser)
    args = parser.parse_args()
    per_cell, repeat = (10, 1) if args.quick else (EPISODES, args.repeat)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder)
        episodes = build_store(results, per_cell)
        leaderboard_s = median_seconds(lambda: metabench.leaderboard(results), repeat)
        report_s = median_seconds(lambda: metabench.report(results, results / "r.html"), repeat)
        cli = [sys.executable, "-m", "metabench"]
        cli_leaderboard_s = command_seconds(
            [*cli, "leaderboard", str(results), "-o", str(results / "l.md")], repeat, failures)
        cli_report_s = command_seconds(
            [*cli, "report", str(results), "-o", str(results / "c.html")], repeat, failures)
    figures = {"leaderboard_s": leaderboard_s, "report_s": report_s,
               "cli_leaderboard_s": cli_leaderboard_s, "cli_report_s": cli_report_s}
    record = {
        "episodes": episodes, **{name: round(value, 3) for name, value in figures.items()},
        "target_s": TARGET_S,
        **{name.replace("_s", "_ratio"): round(value / TARGET_S, 3) for name, value in figures.items()},
        "repeat": repeat,
    }
    return finish(record, [*failures, *positive(figures)], as_json=args.json, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())

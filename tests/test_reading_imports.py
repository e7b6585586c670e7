"""The reading commands (leaderboard, report, plot, export) load neither torch nor the algorithm
plugins: each runs in a fresh interpreter on a store written directly (no training), and the
modules it imported are read back from ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metabench.records import CellRow, EpisodeRow
from metabench.store import Store

# Runs ``metabench ARGS`` and prints, as JSON, the heavy modules it imported.
PROBE = """
import json, sys
from metabench.cli import main
main(sys.argv[1:])
# metabench_plugins alone is the package's docstring, read to find its modules' source
# and metabench_plugins.papers is the presets' data (a preset run's published column)
heavy = sorted(name for name in sys.modules
               if name not in ("metabench_plugins", "metabench_plugins.papers")
               and name.split(".")[0] in ("torch", "metabench_plugins", "torchvision"))
print("IMPORTED " + json.dumps(heavy))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run of two algorithms, two seeds, 20 test episodes each."""
    folder = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    config = {"algorithms": ["maml", "protonet"], "datasets": ["glyphs"], "ways": [5],
              "shots": [1], "queries": 15, "episodes": 20, "seeds": [0, 1],
              "budget": "episodes:100", "val_episodes": 4, "val_points": 2, "hparams": {}}
    with Store.open(folder) as store:
        run = store.create_run("reading", "test", config, {"torch": "none", "device": "cpu"})
        for seed in (0, 1):
            for level, algorithm in ((0.5, "maml"), (0.6, "protonet")):
                key = f"{algorithm}/glyphs/5w1sq15/seed{seed}"
                row = CellRow(key, algorithm, "glyphs", "glyphs", "classification", 5, 1, 15,
                              seed, "conv4", budget="episodes:100", steps=10,
                              train_episodes=100, device="cpu",
                              profile={"train_time_s": 1.0, "adapt_median_s": 0.01})
                accuracy = np.clip(rng.normal(level, 0.1, 20), 0, 1)
                store.save_cell(run, row, [EpisodeRow(i, float(a), None, float(1 - a))
                                           for i, a in enumerate(accuracy)])
        store.set_run_status(run, "complete")
    return folder


def heavy_imports(*args: str) -> list[str]:
    """The torch and plugin modules ``metabench ARGS`` imported (it must succeed)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("IMPORTED "))
    return list(json.loads(line.removeprefix("IMPORTED ")))


@pytest.mark.parametrize("command", [
    ["leaderboard", "{results}"],
    ["leaderboard", "{results}", "--format", "csv", "-o", "{out}/board.csv"],
    ["report", "{results}", "-o", "{out}/report.html"],
    ["plot", "{results}", "-o", "{out}/plots"],
    ["export", "{results}", "--format", "csv", "-o", "{out}/episodes.csv"],
], ids=["leaderboard", "leaderboard-csv", "report", "plot", "export"])
def test_reading_commands_import_neither_torch_nor_algorithm_plugins(results, tmp_path, command):
    args = [part.format(results=results, out=tmp_path) for part in command]
    assert heavy_imports(*args) == []
    assert any(tmp_path.iterdir()) or command[0] == "leaderboard"


def test_a_preset_run_reads_its_published_column_without_torch(tmp_path):
    """A run of a paper preset: the leaderboard names the published figure, and still no
    algorithm plugin (the presets are registered by metabench_plugins.papers). A run narrowed
    with ``--only`` still loads the data set plugins (and torch) to name its settings in the
    rerun command."""
    from metabench.presets import get_preset

    config = get_preset("snell2017-omniglot").config("snell2017-omniglot", 1.0).to_dict()
    with Store.open(tmp_path) as store:
        run = store.create_run("preset", "test", config, {"torch": "none", "device": "cpu"})
        row = CellRow("protonet/omniglot/5w1sq15/seed0", "protonet", "omniglot", "omniglot",
                      "classification", 5, 1, 15, 0, "conv4", budget="episodes:100", steps=10,
                      train_episodes=100, device="cpu", profile={"train_time_s": 1.0})
        store.save_cell(run, row, [EpisodeRow(i, 0.9, None, 0.1) for i in range(20)])
        store.set_run_status(run, "complete")
    done = subprocess.run([sys.executable, "-c", PROBE, "leaderboard", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("IMPORTED []"), done.stdout[-2000:]
    assert "published" in done.stdout and "98.8" in done.stdout  # Snell et al., Table 1


def test_a_command_that_trains_still_loads_them(tmp_path):
    """The probe can fail: listing the plugins loads every algorithm (and so torch)."""
    imported = heavy_imports("plugins", "--json")
    assert "torch" in imported and "metabench_plugins.maml" in imported

"""Golden per-episode results: small comparisons whose every test episode's accuracy and loss
were stored by an earlier release (tests/fixtures/golden_*.json), so a refactoring that
changes a stored result shows up as a failing test (tests/test_golden.py, test_golden_ray.py).

Regenerate (only when a change of results is intended, and say so in the commit):

    OMP_NUM_THREADS=1 python tests/golden.py            # every configuration
    OMP_NUM_THREADS=1 python tests/golden.py default    # one of them

The ``ray`` configurations start a local Ray instance (2 CPUs, no dashboard) as the Ray
tests do.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"

#: The default comparison of ``metabench compare`` (glyphs; maml, fomaml, protonet, reptile;
#: 5-way 1- and 5-shot, 15 queries, seed 0, conv4) at a size that runs in seconds: a budget
#: in episodes (a time budget is not reproducible), few validation and test episodes.
DEFAULT = ["compare", "--budget", "episodes:8", "--episodes", "20", "--val-episodes", "5",
           "--val-points", "2", "--threads", "1"]

#: The comparison of tests/test_backend_ray.py (test plugins on the micro data set).
RAY_TEST = ["--plugin", "test_compare_plugin", "compare", "--datasets", "micro", "--backbone", "flat",
            "--shots", "1,2", "--episodes", "10", "--budget", "episodes:6", "--val-episodes", "3",
            "--val-points", "2", "--algorithms", "protonet,batched,noisy", "--threads", "1"]

#: name -> (arguments of ``metabench``, needs Ray)
CONFIGS: dict[str, tuple[list[str], bool]] = {
    "default": (DEFAULT, False),
    "default_ray": ([*DEFAULT, "--backend", "ray"], True),
    "ray_test": ([*RAY_TEST, "--backend", "ray"], True),
}


def fixture_path(name: str) -> Path:
    return FIXTURES / f"golden_{name}.json"


def per_episode(folder: Path, run_id: str | None = None) -> dict[str, dict[str, list[float]]]:
    """``{cell: {"accuracy": [...], "loss": [...]}}`` of the results stored in ``folder`` (of
    run ``run_id``, or of every run), cells named ALGORITHM/DATASET/WAYSwSHOTSs/seedSEED,
    episodes in order."""
    import metabench

    frame = metabench.load_results(folder, run_id)
    found: dict[str, dict[str, list[float]]] = {}
    for keys, rows in frame.groupby(["algorithm", "dataset", "ways", "shots", "seed"]):
        algorithm, dataset, ways, shots, seed = keys
        rows = rows.sort_values("episode")
        assert list(rows["episode"]) == list(range(len(rows))), f"episodes missing in {keys}"
        found[f"{algorithm}/{dataset}/{ways}w{shots}s/seed{seed}"] = {
            "accuracy": [float(value) for value in rows["accuracy"]],
            "loss": [float(value) for value in rows["loss"]],
        }
    return found


def run(name: str, out: Path) -> dict[str, dict[str, list[float]]]:
    """Run configuration ``name`` into the results folder ``out`` (in this process)."""
    from metabench.cli import main

    arguments, _ = CONFIGS[name]
    try:
        main([*arguments, "--out", str(out), "--no-progress", "--no-report"])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise RuntimeError(f"metabench {' '.join(arguments)} exited {exit_.code}") from None
    return per_episode(out)


def differences(expected: dict[str, dict[str, list[float]]],
                found: dict[str, dict[str, list[float]]], loss_tolerance: float = 1e-5) -> list[str]:
    """What differs: cells, episode counts, any accuracy, a loss by more than the tolerance."""
    if set(found) != set(expected):
        return [f"cells {sorted(found)} != expected {sorted(expected)}"]
    problems = []
    for cell, values in expected.items():
        got = found[cell]
        if len(got["accuracy"]) != len(values["accuracy"]):
            problems.append(f"{cell}: {len(got['accuracy'])} episodes, expected "
                            f"{len(values['accuracy'])}")
            continue
        for episode, (old, new) in enumerate(zip(values["accuracy"], got["accuracy"], strict=True)):
            if old != new:
                problems.append(f"{cell} episode {episode}: accuracy {new!r} != {old!r}")
        for episode, (old, new) in enumerate(zip(values["loss"], got["loss"], strict=True)):
            if not math.isclose(old, new, rel_tol=0.0, abs_tol=loss_tolerance):
                problems.append(f"{cell} episode {episode}: loss {new!r} != {old!r} "
                                f"(tolerance {loss_tolerance})")
    return problems


@contextmanager
def ray_instance() -> Iterator[None]:
    """A local Ray instance as tests/test_backend_ray.py starts it, whose workers import the
    test plugins."""
    import ray

    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env={"env_vars": env})
    try:
        yield
    finally:
        ray.shutdown()


#: The old store (tests/fixtures/old_store/): a complete run, then an interrupted one (Ctrl-C
#: after its second cell is stored) of part of the default comparison.
OLD_STORE_COMPLETE = ["compare", *DEFAULT[1:], "--algorithms", "protonet", "--shots", "1"]
OLD_STORE_INTERRUPTED = ["compare", *DEFAULT[1:], "--algorithms", "protonet,reptile"]
OLD_STORE_CELLS_BEFORE_INTERRUPT = 2
OLD_STORE = FIXTURES / "old_store"


STORE_DUMP = "metabench.sql"  # text, so no binary store is tracked in git


def dump_store(store: Path, dump: Path) -> None:
    """The store as SQL text, with its header pragmas (``iterdump`` leaves them out)."""
    with sqlite3.connect(store) as db:
        pragmas = [f"PRAGMA {name} = {db.execute(f'PRAGMA {name}').fetchone()[0]};"
                   for name in ("application_id", "user_version")]
        dump.write_text("\n".join([*pragmas, *db.iterdump()]) + "\n")


def restore_store(dump: Path, store: Path) -> None:
    """Rebuild the store file from :func:`dump_store`'s text."""
    with sqlite3.connect(store) as db:
        db.executescript(dump.read_text())
    db.close()


def generate_old_store() -> Path:
    """Write tests/fixtures/old_store/: metabench.sql (the store as text) and about.json (how and when)."""
    import signal

    from metabench.cli import main
    from metabench.store import Store

    saved = Store.save_cell

    def save_then_interrupt(self: Store, *args: Any, **kwargs: Any) -> None:
        saved(self, *args, **kwargs)
        save_then_interrupt.calls += 1  # type: ignore[attr-defined]
        if save_then_interrupt.calls == OLD_STORE_CELLS_BEFORE_INTERRUPT:  # type: ignore[attr-defined]
            signal.raise_signal(signal.SIGINT)  # Ctrl-C

    save_then_interrupt.calls = 0  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as folder:
        out = ["--out", folder, "--no-progress", "--no-report"]
        main_exit(main, [*OLD_STORE_COMPLETE, *out], 0)
        Store.save_cell = save_then_interrupt  # type: ignore[method-assign]
        try:
            main_exit(main, [*OLD_STORE_INTERRUPTED, *out], 130)
        finally:
            Store.save_cell = saved  # type: ignore[method-assign]
        if OLD_STORE.exists():
            shutil.rmtree(OLD_STORE)
        OLD_STORE.mkdir(parents=True)
        dump_store(Path(folder) / "metabench.sqlite", OLD_STORE / STORE_DUMP)
        leftovers = sorted(path.name for path in Path(folder).iterdir())
    about = {
        "complete": "metabench " + " ".join(OLD_STORE_COMPLETE) + " --out DIR --no-progress --no-report",
        "interrupted": "metabench " + " ".join(OLD_STORE_INTERRUPTED)
                       + " --out DIR --no-progress --no-report, Ctrl-C (SIGINT) right after its "
                       f"cell {OLD_STORE_CELLS_BEFORE_INTERRUPT} was stored",
        "results_folder": leftovers,
        "generated_by": "OMP_NUM_THREADS=1 python tests/golden.py old_store",
        "commit": _commit(),
    }
    (OLD_STORE / "about.json").write_text(json.dumps(about, indent=1) + "\n")
    return OLD_STORE


def main_exit(main: Any, arguments: list[str], expected: int) -> None:
    """Run ``metabench ARGUMENTS`` in this process; its exit status must be ``expected``."""
    try:
        main(arguments)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    if code != expected:
        raise RuntimeError(f"metabench {' '.join(arguments)} exited {code}, not {expected}")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=TESTS, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def generate(name: str) -> Path:
    """Run ``name`` and write its fixture."""
    arguments, needs_ray = CONFIGS[name]
    with tempfile.TemporaryDirectory() as folder:
        if needs_ray:
            with ray_instance():
                cells = run(name, Path(folder))
        else:
            cells = run(name, Path(folder))
    record: dict[str, Any] = {
        "command": "metabench " + " ".join(arguments) + " --out DIR --no-progress --no-report",
        "environment": "OMP_NUM_THREADS=1; in-process through metabench.cli.main"
                       + ("; Ray: local instance, num_cpus=2, no dashboard" if needs_ray else ""),
        "generated_by": "OMP_NUM_THREADS=1 python tests/golden.py " + name,
        "commit": _commit(),
        "cells": cells,
    }
    path = fixture_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))  # the test plugins
    for chosen in sys.argv[1:] or [*CONFIGS, "old_store"]:
        print(f"wrote {generate_old_store() if chosen == 'old_store' else generate(chosen)}")

"""Reading results back: per-episode and per-cell frames, and exporting them in any format."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pandas as pd

from metabench import registry
from metabench.errors import MetabenchError, unknown_name_error
from metabench.files import atomic_path, check_output_file
from metabench.result_paths import resolve_results_path
from metabench.store import Store

# Columns of a cell joined onto each of its episodes by load_results.
_CELL_JOIN = ("status", "steps", "train_episodes", "best_step", "budget")
TABLES = ("episodes", "cells")


def load_results(path: str | Path = "results", run: str | None = None) -> pd.DataFrame:
    """One row per test episode, with each cell's status, budget use and profile joined.

    ``path`` is a results folder, a store file or ``DIR/RUN`` (one run;
    :mod:`metabench.result_paths`); ``run`` limits to one run too. Columns include run,
    algorithm, dataset, task_type, ways, shots, queries, seed, backbone, episode, accuracy,
    mse, loss, steps, train_episodes and ``profile.*``.
    """
    where = resolve_results_path(path, run)
    with Store.open_existing(where.location) as store:
        episodes = store.episodes_frame(where.run)
        cells = store.cells_frame(where.run)
    keep = ["run", "key", *_CELL_JOIN, *[c for c in cells if str(c).startswith("profile.")]]
    joined = episodes.merge(cells[keep], how="left", left_on=["run", "cell"],
                            right_on=["run", "key"])
    return joined.drop(columns=["key"])


def load_cells(path: str | Path = "results", run: str | None = None) -> pd.DataFrame:
    """One row per cell (ok, failed or skipped) with its reason, budget use, profile,
    hyperparameters and learning curve (``path`` and ``run`` as :func:`load_results` takes them)."""
    where = resolve_results_path(path, run)
    with Store.open_existing(where.location) as store:
        return store.cells_frame(where.run)


def export(path: str | Path = "results", fmt: str = "csv", output: str | Path | None = None,
           run: str | None = None, table: str = "episodes") -> Path:
    """Write the episodes (or cells) table through the reporter registered as ``fmt``
    (csv, parquet, json, md, latex, or a plugin's); returns the file written.

    ``path`` and ``run`` as :func:`load_results` takes them; the file goes by default beside
    the store (``RESULTS/<table>.<format>``), or for a ``DIR/RUN`` into the run's folder
    (``RESULTS/RUN/``, where ``compare --report`` writes the run's report).
    """
    reporters = registry.get_reporters()
    if fmt not in reporters:
        raise unknown_name_error("format", fmt, reporters)
    reporter = reporters[fmt]
    check_requirements(reporter)
    if table not in TABLES:
        raise MetabenchError(f"export table '{table}' is not known; expected {' or '.join(TABLES)}")
    where = resolve_results_path(path, run)
    folder = where.folder / where.run if where.run and run is None else where.folder
    target = Path(output) if output else folder / f"{table}{reporter_suffix(reporter)}"
    check_output_file(target)
    frame = (load_results(where.location, where.run) if table == "episodes"
             else flat_cells(where.location, where.run))
    with atomic_path(target) as temporary:
        reporter.factory(frame, temporary)
    return target


def check_requirements(entry: registry.Entry) -> None:
    """Fail in one line when a module the reporter needs cannot be imported."""
    for module in entry.options.get("requires", ()):
        try:
            importlib.import_module(module)
        except ImportError:
            raise MetabenchError(
                f"format '{entry.name}' needs {module}, which is not installed; "
                f"pip install {module}, or use --format csv"
            ) from None


def reporter_suffix(entry: registry.Entry) -> str:
    """The file extension of a reporter's files: its ``suffix``, else ``.`` + its name."""
    return str(entry.options.get("suffix") or f".{entry.name}")


def flat_cells(path: str | Path, run: str | None) -> pd.DataFrame:
    """The cells frame with its dict and list columns as JSON text (for flat formats)."""
    cells = load_cells(path, run)
    for column in ("profile", "hparams", "curve"):
        cells[column] = [json.dumps(value, sort_keys=True) for value in cells[column]]
    return cells

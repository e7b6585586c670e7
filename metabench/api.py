"""The Python API a notebook calls: ``compare()`` runs a comparison, ``leaderboard()``
summarises stored runs, ``report()`` writes the HTML report. Reading raw results back lives
in :mod:`metabench.results`.

The ``metabench compare`` command is a thin layer over :func:`metabench.session.run_comparison`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from metabench.config import LATEST, check_number
from metabench.errors import MetabenchError
from metabench.reports.data import Filters
from metabench.reports.leaderboard import build_report_data
from metabench.reports.publish import leaderboard_frame
from metabench.result_paths import resolve_results_path


def compare(
    algorithms: Sequence[str] | str | None = None,
    datasets: Sequence[str] | str | None = None,
    ways: Sequence[int] | int | None = None,
    shots: Sequence[int] | int | None = None,
    queries: int | None = None,
    episodes: int | None = None,
    seeds: Sequence[int] | int | None = None,
    budget: str | None = None,
    backbone: str | None = None,
    hparams: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
    device: str | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    resume: str | bool | None = None,
    tuned: str | bool | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Run a comparison (the ``metabench compare`` command) and return its results frame.

    Options mirror the command's flags; ``hparams`` takes ``["maml.inner_lr=0.1"]`` or
    ``{"maml": {"inner_lr": 0.1}}``; ``config`` names a TOML file the other options
    override; ``resume`` is a run id or ``True`` (the latest run with the same config);
    ``tuned`` a tuning id or ``True`` (the latest :func:`metabench.tune` of the same
    algorithms and settings) whose selected hyperparameters the run uses.
    Further options pass through (:data:`metabench.options.OPTIONS` defines them all):
    ``test_dataset``, ``dataset_options``, ``variants``, ``sampler_options``, ``budgets``,
    ``checkpoint``, ``curve_steps``, ``val_episodes``, ``val_points``, ``confidence``,
    ``alpha``, ``margin``, ``data_root``, ``cache_dir``, ``download``, ``backend``,
    ``address``, ``cpus_per_cell``, ``gpus_per_cell``, ``max_retries``, ``jobs``, ``plugins``. The
    frame has one row per test episode; ``frame.attrs`` holds ``run``, ``store`` and ``failed`` (failed
    cell keys). Ctrl-C or SIGTERM raises :class:`metabench.RunInterrupted` with the run
    marked interrupted; ``resume=True`` finishes it.
    """
    given = {
        "algorithms": _listish(algorithms), "datasets": _listish(datasets),
        "ways": _listish(ways), "shots": _listish(shots), "queries": queries,
        "episodes": episodes, "seeds": _listish(seeds), "budget": budget,
        "backbone": backbone, "hparams": hparams, "device": device,
        "out": str(out) if out is not None else None,
        "tuned": LATEST if tuned is True else (tuned or None), **options,
    }
    resume_arg = LATEST if resume is True else (resume or None)
    # Deferred: the run pulls in torch and the runner; leaderboard() and report() never need them.
    from metabench.session import run_comparison

    outcome = run_comparison(given, config_file=config, resume=resume_arg,
                             retry_failed=retry_failed, progress=progress)
    frame = outcome.episodes
    frame.attrs.update(run=outcome.run, store=str(outcome.store), failed=outcome.failed)
    return frame


def _listish(value: Any) -> Any:
    return [value] if isinstance(value, int) else value


Paths = str | Path | Sequence[str | Path]


def leaderboard(paths: Paths = "results", *, datasets: Sequence[str] | str | None = None,
                ways: Sequence[int] | int | str | None = None,
                shots: Sequence[int] | int | str | None = None,
                algorithms: Sequence[str] | str | None = None,
                run: Sequence[str] | str | None = None, all_runs: bool = False,
                confidence: float = 0.95, alpha: float = 0.05, margin: float = 0.0) -> pd.DataFrame:
    """The leaderboard of stored runs (the ``metabench leaderboard`` command) as a frame.

    ``paths`` are results folders, store files or ``DIR/RUN`` ids. One row per algorithm
    and protocol group: score mean and interval, per-seed interval, rank, mark, budget use
    and costs. ``frame.attrs["notes"]`` holds the notes, legend and each run's protocol,
    environment and rerun command.
    """
    _check_statistics(confidence, alpha, margin)
    filters = _filters(datasets, ways, shots, algorithms, run)
    data = build_report_data(_paths(paths), filters, all_runs, confidence, alpha, margin)
    return leaderboard_frame(data)


def report(paths: Paths = "results", output: str | Path | None = None, **options: Any) -> Path:
    """Write the self-contained HTML report of stored runs and return its path.

    ``options`` are :func:`leaderboard`'s; ``output`` defaults to ``RESULTS/report.html``
    (``RESULTS/RUN/report.html`` for one ``DIR/RUN``).
    """
    from metabench.reports.html import write_report  # deferred: matplotlib, for the report only

    confidence, alpha, margin = (options.pop(k, d) for k, d in
                                 (("confidence", 0.95), ("alpha", 0.05), ("margin", 0.0)))
    all_runs = options.pop("all_runs", False)
    _check_statistics(confidence, alpha, margin)
    filters = _filters(options.pop("datasets", None), options.pop("ways", None),
                       options.pop("shots", None), options.pop("algorithms", None),
                       options.pop("run", None))
    if options:
        raise MetabenchError(f"report() got unknown option '{next(iter(options))}'")
    sources = _paths(paths)
    data = build_report_data(sources, filters, all_runs, confidence, alpha, margin)
    return write_report(data, output or default_report_path(sources))


def default_report_path(paths: Sequence[str | Path]) -> Path:
    """Where a report goes by default: beside the first store, or in the run's folder for a
    ``DIR/RUN``."""
    first = resolve_results_path(paths[0])
    return (first.folder / first.run if first.run else first.folder) / "report.html"


def _paths(paths: Paths) -> list[str | Path]:
    return [paths] if isinstance(paths, str | Path) else list(paths)


def _filters(datasets: Any, ways: Any, shots: Any, algorithms: Any, runs: Any) -> Filters:
    return Filters(_names(datasets), _numbers("ways", ways), _numbers("shots", shots),
                   _names(algorithms), _names(runs))


def _names(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(item).strip() for item in items if str(item).strip())


def _numbers(name: str, value: Any) -> tuple[int, ...]:
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        return tuple(int(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise MetabenchError(f"--{name} {value!r} is not a list of integers") from None


def _check_statistics(confidence: float, alpha: float, margin: float) -> None:
    for name, value in (("confidence", confidence), ("alpha", alpha)):
        check_number(name, value)
        if not 0.0 < value < 1.0:
            raise MetabenchError(f"{name}={value} must lie strictly between 0 and 1")
    check_number("margin", margin, 0)

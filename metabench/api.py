"""The Python API: ``compare()`` runs a comparison, ``load_results()`` reads one back.

The ``metabench compare`` command is a thin layer over :func:`run_comparison`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from metabench.backends import get_backend
from metabench.data import build_dataset as build_registered_dataset
from metabench.environment import machine_info
from metabench.episodes import Dataset, EpisodeSampler
from metabench.errors import MetabenchError
from metabench.plan import LATEST, Cell, Config, Plan, build_plan, load_toml, make_config
from metabench.plugins import get_plugin_manager, load_plugins
from metabench.profiling import resolve_device
from metabench.progress import make_progress
from metabench.protocol import CLASSIFICATION
from metabench.runner import CellResult, RunContext, run_cell
from metabench.stats import RankSummary, rank_summary, summary_table
from metabench.store import Store, check_store_file, now, store_path

GROUP_COLS = ("dataset", "ways", "shots", "queries")
_CELL_JOIN = ("status", "steps", "train_episodes", "best_step", "budget")


@dataclass
class RunOutcome:
    """A finished (or resumed) run: its id, store, config, and results as frames."""

    run: str
    store: Path
    config: Config
    episodes: pd.DataFrame
    cells: pd.DataFrame
    ran: int

    @property
    def failed(self) -> list[str]:
        """Keys of the run's failed cells."""
        return list(self.cells.loc[self.cells["status"] == "failed", "key"])


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
    retry_failed: bool = False,
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Run a comparison (the ``metabench compare`` command) and return its results frame.

    Options mirror the command's flags; ``hparams`` takes ``["maml.inner_lr=0.1"]`` or
    ``{"maml": {"inner_lr": 0.1}}``; ``config`` names a TOML file the other options
    override; ``resume`` is a run id or ``True`` (the latest run with the same config).
    Further options (``val_episodes``, ``val_points``, ``confidence``, ``margin``,
    ``data_root``, ``cache_dir``, ``download``, ``plugins``) pass through. The frame has one row per test
    episode; ``frame.attrs`` holds ``run``, ``store`` and ``failed`` (failed cell keys).
    """
    given = {
        "algorithms": _listish(algorithms), "datasets": _listish(datasets),
        "ways": _listish(ways), "shots": _listish(shots), "queries": queries,
        "episodes": episodes, "seeds": _listish(seeds), "budget": budget,
        "backbone": backbone, "hparams": hparams, "device": device,
        "out": str(out) if out is not None else None, **options,
    }
    resume_arg = LATEST if resume is True else (resume or None)
    outcome = run_comparison(given, config_file=config, resume=resume_arg,
                             retry_failed=retry_failed, progress=progress)
    frame = outcome.episodes
    frame.attrs.update(run=outcome.run, store=str(outcome.store), failed=outcome.failed)
    return frame


def _listish(value: Any) -> Any:
    return [value] if isinstance(value, int) else value


def run_comparison(
    options: Mapping[str, Any],
    config_file: str | Path | None = None,
    resume: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    backend: str = "local",
) -> RunOutcome:
    """Plan, run the cells not yet stored, and read the run back from the store."""
    given = {k: v for k, v in options.items() if v is not None}
    get_backend(backend)  # an unknown backend fails before anything is written
    load_plugins(_as_names(given.get("plugins")))
    base = make_config(load_toml(config_file)) if config_file else None
    config = make_config(given, base)
    load_plugins(config.plugins)
    config, location, resume_id = _resume_target(config, given, resume)
    if resume_id is None:
        return _fresh_run(config, location, progress, backend)
    with Store.open_existing(location) as store:
        run_id, config = _open_run(store, config, given, resume_id)
        load_plugins(config.plugins)  # the run's own plugins, when resumed by id
        work = _prepare(config)
        ran = _execute_plan(store, run_id, work, retry_failed, progress, backend)
        return _outcome(store, run_id, config, ran)


def _fresh_run(config: Config, location: Path, progress: bool, backend: str) -> RunOutcome:
    # Everything a user can get wrong is checked before the store is created or written.
    path = store_path(location)
    if path.exists() and path.stat().st_size > 0:
        check_store_file(path)
    work = _prepare(config)
    with Store.open(location) as store:
        run_id = _new_run(store, config)
        ran = _execute_plan(store, run_id, work, False, progress, backend)
        return _outcome(store, run_id, config, ran)


@dataclass
class _Work:
    plan: Plan
    device: torch.device
    datasets: dict[str, Dataset]


def _prepare(config: Config) -> _Work:
    """Resolve names, the device and the data sets: every user error surfaces here."""
    plan = build_plan(config)
    return _Work(plan, resolve_device(config.device), build_datasets(plan))


def _outcome(store: Store, run_id: str, config: Config, ran: int) -> RunOutcome:
    return RunOutcome(run_id, store.path, config, store.episodes_frame(run_id),
                      store.cells_frame(run_id), ran)


def _as_names(value: Any) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]


def _resume_target(config: Config, given: Mapping[str, Any],
                   resume: str | None) -> tuple[Config, Path, str | None]:
    """Where the store is and which run to resume; ``DIR/RUN`` names both."""
    location = Path(config.out)
    if resume and resume != LATEST and ("/" in resume or "\\" in resume):
        path = Path(resume)
        if "out" not in given:
            location = path.parent
            config = make_config({"out": str(location)}, config)
        resume = path.name
    return config, location, resume


def _open_run(store: Store, config: Config, given: Mapping[str, Any],
              resume: str) -> tuple[str, Config]:
    if resume == LATEST:
        record = store.latest_run(config.fingerprint())
        if record is None:
            raise MetabenchError(
                f"--resume: no earlier run in {store.path} has this configuration; "
                "run without --resume to start one"
            )
        return record.id, config
    record = store.run(resume)
    stored = make_config(record.config)
    merged = make_config(given, stored)
    _check_same_plan(resume, stored, merged)
    return record.id, merged


def _check_same_plan(run_id: str, stored: Config, merged: Config) -> None:
    old, new = stored.plan_fields(), merged.plan_fields()
    changed = [name for name in old if old[name] != new[name]]
    if changed:
        name = changed[0]
        raise MetabenchError(
            f"--resume {run_id}: option '{name}' is {new[name]!r} but the run used "
            f"{old[name]!r}; drop it to resume, or start a new run"
        )


def _new_run(store: Store, config: Config) -> str:
    run_id = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    return store.create_run(run_id, config.fingerprint(), config.to_dict(), {})


def _execute_plan(store: Store, run_id: str, work: _Work, retry_failed: bool, progress: bool,
                  backend: str) -> int:
    plan, device = work.plan, work.device
    if retry_failed:
        store.delete_cells(run_id, sorted(store.cell_keys(run_id, ("failed",))))
    done = store.cell_keys(run_id)
    pending = [cell for cell in plan.cells if cell.key not in done]
    _record_environment(store, run_id, device)
    hook = get_plugin_manager().hook
    with make_progress(progress, len(pending)) as bar:
        context = RunContext(plan, device, work.datasets, bar)

        def execute(cell: Cell) -> CellResult:
            hook.cell_started(cell=cell)
            return run_cell(cell, context)

        def on_result(result: CellResult) -> None:
            store.save_cell(run_id, result.row(), result.episodes)
            hook.cell_finished(cell=result.cell, result=result)
            bar.cell_done(result)

        _run_backend(store, run_id, get_backend(backend), pending, execute, on_result)
    return len(pending)


def _run_backend(store: Store, run_id: str, backend: Any, pending: list[Cell],
                 execute: Any, on_result: Any) -> None:
    try:
        backend.run(pending, execute, on_result)
    except BaseException:
        store.set_run_status(run_id, "interrupted")
        raise
    failed = store.cell_keys(run_id, ("failed",))
    store.set_run_status(run_id, "failed" if failed else "complete")


def _record_environment(store: Store, run_id: str, device: torch.device) -> None:
    record = store.run(run_id)
    info = machine_info(device)
    if record.environment:
        # A resumed run keeps its first environment and lists where it was resumed.
        info = {**record.environment,
                "resumed": [*record.environment.get("resumed", []), {"at": now(), **info}]}
    store.set_run_status(run_id, "running", environment=info)


def build_datasets(plan: Plan) -> dict[str, Dataset]:
    """Build the plan's data sets and check every spec fits their evaluation splits."""
    datasets = {name: build_dataset(name, plan.config) for name in plan.task_types}
    groups = {(cell.dataset, cell.spec): cell for cell in plan.cells}
    for (name, spec), cell in groups.items():
        for split in ("validation", "test"):
            EpisodeSampler(datasets[name], split, spec, cell.seed)
    return datasets


def build_dataset(name: str, config: Config) -> Dataset:
    """Construct a registered data set with the run's data options."""
    return build_registered_dataset(name, data_root=config.data_root, download=config.download,
                                    cache_dir=config.cache_dir)


# --- reading results -----------------------------------------------------------------------


def load_results(path: str | Path = "results", run: str | None = None) -> pd.DataFrame:
    """One row per test episode, with each cell's status, budget use and profile joined.

    ``path`` is a results folder or its ``metabench.sqlite``; ``run`` limits to one run.
    Columns include run, algorithm, dataset, task_type, ways, shots, queries, seed, backbone,
    episode, accuracy, mse, loss, steps, train_episodes and ``profile.*``.
    """
    with Store.open_existing(path) as store:
        episodes = store.episodes_frame(run)
        cells = store.cells_frame(run)
    keep = ["run", "key", *_CELL_JOIN, *[c for c in cells if c.startswith("profile.")]]
    joined = episodes.merge(cells[keep], how="left", left_on=["run", "cell"],
                            right_on=["run", "key"])
    return joined.drop(columns=["key"])


def load_cells(path: str | Path = "results", run: str | None = None) -> pd.DataFrame:
    """One row per cell (ok, failed or skipped) with its reason, budget use, profile,
    hyperparameters and learning curve."""
    with Store.open_existing(path) as store:
        return store.cells_frame(run)


def export(path: str | Path = "results", fmt: str = "csv", output: str | Path | None = None,
           run: str | None = None, table: str = "episodes") -> Path:
    """Write the episodes (or cells) table as CSV or Parquet; returns the file written."""
    if fmt not in ("csv", "parquet"):
        raise MetabenchError(f"export format '{fmt}' is not known; expected csv or parquet")
    if table not in ("episodes", "cells"):
        raise MetabenchError(f"export table '{table}' is not known; expected episodes or cells")
    if fmt == "parquet":
        _require_pyarrow()
    frame = load_results(path, run) if table == "episodes" else _flat_cells(path, run)
    target = Path(output) if output else store_path(path).parent / f"{table}.{fmt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(target, index=False)
    else:
        frame.to_parquet(target, index=False)
    return target


def _flat_cells(path: str | Path, run: str | None) -> pd.DataFrame:
    import json

    cells = load_cells(path, run)
    for column in ("profile", "hparams", "curve"):
        cells[column] = [json.dumps(value, sort_keys=True) for value in cells[column]]
    return cells


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MetabenchError(
            "export --format parquet needs pyarrow, which is not installed; "
            "pip install pyarrow, or use --format csv"
        ) from None


# --- the leaderboard -----------------------------------------------------------------------


def leaderboard(episodes: pd.DataFrame, cells: pd.DataFrame, confidence: float = 0.95,
                margin: float = 0.0) -> pd.DataFrame:
    """One row per setting x algorithm: metric mean and CI, significance mark vs the best,
    meta-training time, steps, adaptation time per episode and peak memory."""
    parts = []
    for task_type, frame in episodes.groupby("task_type", sort=False):
        metric = "accuracy" if task_type == CLASSIFICATION else "mse"
        table = summary_table(frame, metric=metric, group_cols=GROUP_COLS,
                              confidence=confidence, margin=margin)
        table.insert(0, "metric", metric)
        parts.append(table)
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return table.merge(_cell_costs(cells), how="left", on=["algorithm", *GROUP_COLS])


def ranks_across_settings(table: pd.DataFrame, alpha: float = 0.05) -> RankSummary | None:
    """Average ranks over a leaderboard's settings, Friedman's test and Nemenyi's CD.

    Accuracy ranks higher-is-better and MSE lower-is-better, so classification and
    regression settings can be ranked together. Settings where an algorithm has no result
    are left out; None when fewer than 2 settings or 2 algorithms remain.
    """
    if table.empty:
        return None
    score = table["mean"].where(table["metric"] == "accuracy", -table["mean"])
    wide = table.assign(score=score).pivot(
        index=["metric", *GROUP_COLS], columns="algorithm", values="score"
    ).dropna(how="any")
    if wide.shape[0] < 2 or wide.shape[1] < 2:
        return None
    return rank_summary(wide, alpha=alpha)


def _cell_costs(cells: pd.DataFrame) -> pd.DataFrame:
    ok = cells[cells["status"] == "ok"]
    columns = {
        "train_time_s": ("profile.train_time_s", "mean"),
        "steps": ("steps", "mean"),
        "train_episodes": ("train_episodes", "mean"),
        "adapt_ms": ("profile.adapt_median_s", "mean"),
        "peak_train_mb": ("profile.peak_memory_train_mb", "max"),
        "peak_eval_mb": ("profile.peak_memory_eval_mb", "max"),
    }
    present = {k: v for k, v in columns.items() if v[0] in ok}
    costs = ok.groupby(["algorithm", *GROUP_COLS], as_index=False).agg(**present)
    if "adapt_ms" in costs:
        costs["adapt_ms"] = costs["adapt_ms"] * 1000.0
    return costs


def format_mean_ci(mean: float, ci: float, metric: str) -> str:
    """``45.20 ± 1.10`` (percent for accuracy); MSE to the precision of its interval,
    two significant digits of the half-width: ``2.45 ± 0.58``, ``0.1234 ± 0.0041``."""
    if metric == "accuracy":
        mean, ci = 100 * mean, 100 * ci
        return f"{mean:.2f} ± {ci:.2f}" if not math.isnan(ci) else f"{mean:.2f}"
    if math.isnan(ci) or ci <= 0 or math.isinf(ci):
        return f"{mean:.4g}"
    decimals = max(0, 1 - math.floor(math.log10(ci)))
    return f"{mean:.{decimals}f} ± {ci:.{decimals}f}"

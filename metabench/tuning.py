"""Fair tuning: ``metabench tune`` and :func:`tune`, and what ``compare --tuned`` reads back.

Every algorithm and setting of the comparison gets a study with the same number of trials,
each trained on the same trial budget and scored on the validation split only: the test
episodes are never built. Trials are stored one transaction each in the results store's
``trials`` table, so an interrupted tuning resumes where it stopped, and they run on the
comparison's backend (local or Ray) like cells.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metabench.backends import Backend, Job, get_backend
from metabench.cell import Cell
from metabench.config import LATEST, Config, load_toml_table
from metabench.data import Dataset
from metabench.environment import machine_info
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.metrics import metric_named
from metabench.plan import build_plan, study_setting
from metabench.plugins import load_plugins
from metabench.profiling import resolve_device
from metabench.progress import make_progress
from metabench.records import CellResult
from metabench.runner import VALIDATION, RunContext
from metabench.session import build_dataset, configure, run_marking_interruptions
from metabench.store import Store, check_store_file, store_path
from metabench.trials import (
    Study,
    TrialRunner,
    TrialSummary,
    TuneSettings,
    make_settings,
    plan_studies,
    propose,
    trial_config,
    trial_of,
    trial_row,
)
from metabench.typed import typed_config


class TuningInterrupted(KeyboardInterrupt):
    """A tuning stopped by Ctrl-C or SIGTERM; its finished trials are stored and it resumes."""

    def __init__(self, tuning: str, store: Path) -> None:
        super().__init__(f"tuning {tuning} interrupted; finished trials are stored in {store}")
        self.tuning, self.store = tuning, store


@dataclass
class TuneOutcome:
    """A finished (or resumed) tuning: its id, store, options, every trial and the best."""

    tuning: str
    store: Path
    config: Config
    settings: TuneSettings
    studies: list[Study]
    trials: pd.DataFrame
    ran: int
    skipped: list[str]

    @property
    def best(self) -> pd.DataFrame:
        """One row per study: the selected trial, its validation value and hyperparameters,
        trial 0's (the starting values), and how many trials completed, were pruned, failed."""
        return best_frame(self.trials)


def tune(
    algorithms: Sequence[str] | str | None = None,
    datasets: Sequence[str] | str | None = None,
    ways: Sequence[int] | int | None = None,
    shots: Sequence[int] | int | None = None,
    trials: int | None = None,
    trial_budget: str | None = None,
    space: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
    seed: int | None = None,
    prune: bool | None = None,
    config: str | Path | None = None,
    resume: str | bool | None = None,
    progress: bool = True,
    **options: Any,
) -> TuneOutcome:
    """Tune every algorithm on every setting (the ``metabench tune`` command).

    ``trials`` per study (default 16), each trained for ``trial_budget`` (default: a third
    of ``budget``) and scored on validation episodes; ``space`` changes the plugins' search
    spaces (``["fomaml.inner_lr=log:0.01:1"]`` or ``{"fomaml": {"inner_lr": "off"}}``);
    ``seed`` seeds the sampler. Other options are :func:`metabench.compare`'s. ``resume`` is
    a tuning id or True (the latest tuning with the same options).
    """
    given = {"algorithms": algorithms, "datasets": datasets,
             "ways": [ways] if isinstance(ways, int) else ways,
             "shots": [shots] if isinstance(shots, int) else shots, **options}
    settings = {"trials": trials, "trial_budget": trial_budget, "space": space, "seed": seed,
                "prune": prune}
    resume_arg = LATEST if resume is True else (resume or None)
    return run_tuning(given, settings, config, resume_arg, progress)


def run_tuning(options: Mapping[str, Any], tune_options: Mapping[str, Any],
               config_file: str | Path | None = None, resume: str | None = None,
               progress: bool = True) -> TuneOutcome:
    """Plan the studies, run the trials not yet stored, and read the tuning back."""
    given = {k: v for k, v in options.items() if v is not None}
    config = typed_config(configure(given, config_file))
    settings = make_settings(tune_options, _file_settings(config_file))
    path = store_path(config.out)
    if resume is None and path.exists() and path.stat().st_size > 0:
        check_store_file(path)
    if resume is not None:
        with Store.open_existing(config.out) as store:
            config, settings = _resumed(store, resume, config, settings)
        _check_same_settings(resume, settings, tune_options)
    work = _prepare(config, settings)
    with Store.open(config.out) as store:
        tuning_id = _tuning_id(store, resume, config, settings)
        ran = _run_waves(store, tuning_id, work, progress)
        return TuneOutcome(tuning_id, store.path, config, settings, work.studies,
                           store.trials_frame(tuning_id), ran, work.skipped)


def _file_settings(config_file: str | Path | None) -> TuneSettings | None:
    return make_settings(load_toml_table(config_file, "tune")) if config_file else None


def fingerprint(config: Config, settings: TuneSettings) -> str:
    """A short stable hash of what decides a tuning's trials."""
    text = json.dumps([config.plan_fields(), settings.to_dict()], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _resumed(store: Store, resume: str, config: Config,
             settings: TuneSettings) -> tuple[Config, TuneSettings]:
    if resume == LATEST:
        key = fingerprint(config, settings)
        if not any(record.fingerprint == key for record in store.tunings()):
            raise MetabenchError(f"--resume: no earlier tuning in {store.path} has these options; "
                                 "run without --resume to start one")
        return config, settings
    record = store.tuning(resume)
    stored = make_settings(record.settings)
    return typed_config(configure({k: v for k, v in config.to_dict().items() if k in _RUNTIME},
                                  None, configure(record.config))), stored


def _check_same_settings(resume: str, stored: TuneSettings, given: Mapping[str, Any]) -> None:
    """A resumed tuning keeps its settings: a different one given now is an error, never
    silently ignored."""
    wanted = make_settings({k: v for k, v in given.items() if v is not None}, stored)
    for name in ("trials", "trial_budget", "seed", "prune", "space"):
        old, new = getattr(stored, name), getattr(wanted, name)
        if given.get(name) is not None and old != new:
            raise MetabenchError(f"--resume {resume}: option '{name}' is {new!r} but the tuning "
                                 f"used {old!r}; drop it to resume, or start a new tuning")


_RUNTIME = ("device", "out", "backend", "address", "cpus_per_cell", "gpus_per_cell",
            "max_retries", "data_root", "cache_dir", "download")


def _tuning_id(store: Store, resume: str | None, config: Config, settings: TuneSettings) -> str:
    key = fingerprint(config, settings)
    if resume == LATEST:
        return [record for record in store.tunings() if record.fingerprint == key][-1].id
    if resume is not None:
        return resume
    stamp = datetime.now().strftime("tune-%Y-%m-%dT%H-%M-%S")
    settings_record = {**settings.to_dict(), "trial_budget": settings.budget_for(config).label}
    return store.create_tuning(stamp, key, config.to_dict(), settings_record)


@dataclass
class _Work:
    config: Config
    settings: TuneSettings
    studies: list[Study]
    skipped: list[str]
    backend: Backend
    datasets: dict[str, Dataset]
    device: Any


def _prepare(config: Config, settings: TuneSettings) -> _Work:
    """Every user error surfaces here, before the store is written: names, spaces, backend,
    data sets and whether their validation splits can supply the episodes."""
    load_plugins(config.plugins)
    if config.tuned:
        raise MetabenchError("--tuned is an option of metabench compare, not of tune")
    plan = build_plan(config)
    studies, skipped = plan_studies(plan, settings)
    backend = get_backend(config.backend, config)
    datasets = {name: build_dataset(name, config) for name in plan.task_types}
    for study in studies:  # the validation split only: tuning never builds a test sampler
        for seed in config.seeds:
            EpisodeSampler(datasets[study.dataset], VALIDATION, study.spec, seed)
    return _Work(config, settings, studies, skipped, backend, datasets,
                 resolve_device(config.device))


def _run_waves(store: Store, tuning_id: str, work: _Work, progress: bool) -> int:
    """Trial 0 of every study, then trial 1, ...: each wave runs on the backend."""
    config, settings = work.config, work.settings
    store.set_tuning_status(tuning_id, "running", environment=machine_info(work.device))
    done = set(store.trials_frame(tuning_id)["key"])
    total = settings.trials * len(work.studies) * len(set(config.seeds))
    ran = 0
    validation: dict = {}
    with make_progress(progress, total - len(done)) as bar:
        for number in range(settings.trials):
            history = summaries(store.trials_frame(tuning_id))
            proposals = {study.trial_label(number): (study, _params(study, number, history,
                                                                     settings))
                         for study in work.studies}
            plan = build_plan(trial_config(config, proposals, settings.budget_for(config)))
            cells = [cell for cell in plan.cells if cell.key not in done]
            if not cells:
                continue
            runner = TrialRunner({name: trials for name, trials in history.items()},
                                 settings.prune)
            context = RunContext(plan, work.device, work.datasets, bar, _validation=validation)

            def on_result(result: CellResult, proposals: Mapping = proposals) -> None:
                study, params = proposals[result.cell.algorithm]
                _, trial = trial_of(result.cell)
                store.save_trial(tuning_id, trial_row(result, study.name, trial, params,
                                                      config.checkpoint))
                bar.cell_done(result)

            job = Job(cells, plan, partial(runner, context=context), _nothing, bar,
                      runner=runner)
            _run_backend(store, tuning_id, work.backend, job, on_result)
            ran += len(cells)
    store.set_tuning_status(tuning_id, "complete")
    return ran


def _nothing(cell: Cell) -> None:
    """Trials are not cells of a comparison: the cell hooks do not see them."""


def _params(study: Study, number: int, history: Mapping[str, Sequence[TrialSummary]],
            settings: TuneSettings) -> dict[str, Any]:
    earlier = [trial for trial in history.get(study.name, ()) if trial.number < number]
    stored = [trial for trial in history.get(study.name, ()) if trial.number == number]
    return dict(stored[0].params) if stored else propose(study, number, earlier, settings)


def _run_backend(store: Store, tuning_id: str, backend: Backend, job: Job,
                 on_result: Callable[[CellResult], None]) -> None:
    run_marking_interruptions(backend, job, on_result,
                              lambda status: store.set_tuning_status(tuning_id, status),
                              lambda: TuningInterrupted(tuning_id, store.path))


# --- reading trials back ----------------------------------------------------------------------

def summaries(trials: pd.DataFrame) -> dict[str, list[TrialSummary]]:
    """Per study, its stored trials with their seeds combined, in trial order: failed if a
    seed failed, pruned if one was pruned; the score and the curve are means over seeds."""
    found: dict[str, list[TrialSummary]] = {}
    if trials.empty:
        return found
    for (study, number), rows in trials.groupby(["study", "number"], sort=True):
        statuses = set(rows["status"])
        status = "failed" if "failed" in statuses else "pruned" if "pruned" in statuses \
            else "complete"
        metric = metric_named(str(rows["metric"].iloc[0]))
        score = None
        if status == "complete":
            score = metric.score(float(np.mean(rows["value"].astype(float))))
        key = f"val_{metric.name}"
        points: dict[int, list[float]] = {}
        for curve in rows["curve"]:
            for index, point in enumerate(curve):
                points.setdefault(index, []).append(float(point[key]))
        found.setdefault(str(study), []).append(TrialSummary(
            int(str(number)), rows["params"].iloc[0], status, score,
            {index: float(np.mean(values)) for index, values in points.items()}))
    return found


def best_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per study: algorithm, setting, the best trial (highest mean validation score;
    the lower number on a tie), its value and hyperparameters, trial 0's value, and the
    count of complete, pruned and failed trials."""
    rows = []
    for study, found in summaries(trials).items():
        first = trials[trials["study"] == study].iloc[0]
        metric = metric_named(str(first["metric"]))
        complete = [trial for trial in found if trial.score is not None]
        best = max(complete, key=lambda t: (t.score, -t.number)) if complete else None
        start = next((t for t in found if t.number == 0 and t.score is not None), None)
        rows.append({
            "study": study, "algorithm": first["algorithm"],
            "setting": study[len(str(first["algorithm"])) + 1:],
            "best_trial": best.number if best else None,
            "best_value": metric.score(best.score) if best and best.score is not None else None,
            "start_value": metric.score(start.score) if start and start.score is not None else None,
            "params": dict(best.params) if best else {}, "metric": metric.name,
            "complete": len(complete), "pruned": sum(t.status == "pruned" for t in found),
            "failed": sum(t.status == "failed" for t in found),
        })
    return pd.DataFrame(rows)


# --- compare --tuned --------------------------------------------------------------------------

def resolve_tuned(config: Config) -> Config:
    """``config`` with ``tuning`` filled from the tuning ``config.tuned`` names (``latest``:
    the newest tuning in the results store covering every algorithm and setting of the
    comparison): the selected hyperparameters per algorithm and setting, and how they were
    found. Unchanged without ``--tuned`` or when already resolved (a resumed run)."""
    if not config.tuned or config.tuning:
        return config
    location, wanted = _tuning_target(config)
    load_plugins(config.plugins)
    plan = build_plan(config)
    needed = {(cell.algorithm, study_setting(cell.dataset, cell.spec))
              for cell in plan.cells if not plan.skip_reason(cell)}
    with Store.open_existing(location) as store:
        records = [store.tuning(wanted)] if wanted != LATEST else list(reversed(store.tunings()))
        for record in records:
            best = best_frame(store.trials_frame(record.id))
            found = {(str(row["algorithm"]), str(row["setting"])): dict(row)
                     for row in best.to_dict("records") if row["best_trial"] is not None}
            missing = sorted(needed - set(found))
            if not missing:
                return replace(config, tuning=_tuning_record(record, found, needed, store.path))
            if wanted != LATEST:
                label, setting = missing[0]
                raise MetabenchError(f"--tuned {record.id}: the tuning has no finished trial of "
                                     f"{label} on {setting}; tune it (metabench tune) or drop "
                                     "--tuned")
    label, setting = sorted(needed)[0]
    raise MetabenchError(f"--tuned: no tuning in {store_path(location)} covers every algorithm "
                         f"and setting of this comparison (e.g. {label} on {setting}); run "
                         "metabench tune with the same algorithms and settings first")


def _tuning_target(config: Config) -> tuple[Path, str]:
    tuned = str(config.tuned)
    if tuned != LATEST and ("/" in tuned or "\\" in tuned):
        path = Path(tuned)
        return path.parent, path.name
    return Path(config.out), tuned


def _tuning_record(record: Any, found: Mapping[tuple[str, str], Mapping[Any, Any]],
                   needed: set[tuple[str, str]], path: Path) -> dict[str, Any]:
    selected: dict[str, dict[str, Any]] = {}
    values: dict[str, dict[str, Any]] = {}
    for label, setting in sorted(needed):
        row = found[(label, setting)]
        selected.setdefault(label, {})[setting] = row["params"]
        values.setdefault(label, {})[setting] = {"trial": row["best_trial"],
                                                 "validation": row["best_value"]}
    settings = record.settings
    return {"id": record.id, "store": str(path), "trials": settings.get("trials"),
            "trial_budget": settings.get("trial_budget"), "seed": settings.get("seed"),
            "selected": selected, "validation": values}

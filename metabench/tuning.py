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
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from metabench.backends import Backend, Job, get_backend
from metabench.cell import Cell
from metabench.config import LATEST, Config, load_toml_table
from metabench.data import Dataset
from metabench.environment import machine_info
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.plan import build_plan
from metabench.plugins import load_plugins
from metabench.profiling import resolve_device
from metabench.progress import make_progress
from metabench.records import CellResult
from metabench.runner import VALIDATION, RunContext
from metabench.session import configure, run_marking_interruptions
from metabench.store import Store, store_path
from metabench.store_schema import check_store_file
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
from metabench.tuned import best_frame, summaries
from metabench.typed import typed_config
from metabench.workspace import build_dataset


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
            "max_retries", "jobs", "data_root", "cache_dir", "download")


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

"""A comparison run from its options to its stored results: configure, plan, run, resume.

:func:`run_comparison` is what ``metabench compare`` and :func:`metabench.compare` call.
Every cell is stored in its own transaction as it finishes; an interruption (Ctrl-C, or
SIGTERM from a scheduler, handled here so a notebook or script gets it too) marks the run
``interrupted`` and ``--resume`` finishes it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from metabench.backends import Backend, Job, get_backend
from metabench.config import LATEST, Config, load_toml, make_config
from metabench.data import Dataset
from metabench.data import build_dataset as build_registered_dataset
from metabench.data.base import ClassificationDataset
from metabench.environment import machine_info
from metabench.errors import MetabenchError
from metabench.multisource import MultiSource, make_sampler
from metabench.plan import Plan, build_plan
from metabench.plugins import get_plugin_manager, load_plugins
from metabench.profiling import resolve_device
from metabench.progress import make_progress
from metabench.records import CellResult
from metabench.runner import RunContext, run_cell
from metabench.sources import is_multi_source, registered_name, source_names, subset_of
from metabench.store import Store, StoreBusy, check_store_file, now, store_path


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


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; its finished cells are stored and it can resume."""

    def __init__(self, run: str, store: Path) -> None:
        super().__init__(f"run {run} interrupted; finished cells are stored in {store}")
        self.run, self.store = run, store


def configure(options: Mapping[str, Any], config_file: str | Path | None = None,
              stored: Config | None = None) -> Config:
    """A comparison's configuration, always layered in this order (later wins):

    1. the defaults, or the stored configuration of the run being resumed (``stored``);
    2. the TOML file ``config_file`` (its top level or a ``[compare]`` table);
    3. ``options``, from the command's flags or :func:`metabench.compare`'s arguments.

    Plugins load in this order: built-ins, installed entry points and ``METABENCH_PLUGINS``
    when the plugin manager starts, then ``--plugin`` modules as the command line is read,
    then the modules the configuration names (``plugins``), just before names resolve in
    :func:`prepare`. Nothing here needs a plugin: options are checked for form only.
    """
    base = stored
    if config_file:
        base = make_config(load_toml(config_file), stored)
    return make_config(options, base)


def run_comparison(
    options: Mapping[str, Any],
    config_file: str | Path | None = None,
    resume: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    backend: str | None = None,
) -> RunOutcome:
    """Plan, run the cells not yet stored, and read the run back from the store."""
    given = {k: v for k, v in options.items() if v is not None}
    if backend is not None:
        given["backend"] = backend
    if retry_failed and resume is None:
        raise MetabenchError("--retry-failed needs --resume [RUN]: it runs the failed cells of "
                             "an earlier run again")
    config = configure(given, config_file)
    config, location, resume_id = _resume_target(config, given, resume)
    if config.tuned and (resume_id is None or resume_id == LATEST):
        from metabench.tuning import resolve_tuned

        config = resolve_tuned(config)
    if resume_id is None:
        return _fresh_run(config, location, progress)
    with Store.open_existing(location) as store:
        run_id, config = _open_run(store, config, given, config_file, resume_id)
        check_writable(store.path)
        work = prepare(config)
        with leased(store, run_id):
            _store_side_files(store, run_id)
            ran = _execute_plan(store, run_id, work, retry_failed, progress)
        return _outcome(store, run_id, config, ran)


def _fresh_run(config: Config, location: Path, progress: bool) -> RunOutcome:
    # Everything a user can get wrong is checked before the store is created or written.
    path = store_path(location)
    if path.exists() and path.stat().st_size > 0:
        check_store_file(path)
    check_writable(path)
    work = prepare(config)
    with Store.open(location) as store:
        run_id = _new_run(store, config)
        try:
            with leased(store, run_id):
                ran = _execute_plan(store, run_id, work, False, progress)
        except Exception:
            # A run rejected before its first cell (a backend that cannot start, a bad
            # address) leaves no record behind.
            _discard_quietly(store, run_id)
            raise
        return _outcome(store, run_id, config, ran)


def check_writable(path: Path) -> None:
    """Fail in one line unless the store file ``path`` can be created or written: its folder
    must be a folder (or creatable) and writable, an existing file writable."""
    folder = path.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise MetabenchError(f"cannot write results to {folder}: {existing} is a file, not a "
                             "folder")
    if path.is_dir():
        raise MetabenchError(f"cannot write results to {path}: it is a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise MetabenchError(f"cannot write results to {path}: the file is read-only")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise MetabenchError(f"cannot write results to {folder}: {existing} is not writable")


@contextmanager
def leased(store: Store, run_id: str) -> Iterator[None]:
    """Hold the run's lease while the block runs (a second resume of it is refused)."""
    store.acquire_lease(run_id)
    try:
        yield
    finally:
        with suppress(MetabenchError):  # a stale lease of a gone process is taken over later
            store.release_lease(run_id)


def _discard_quietly(store: Store, run_id: str) -> None:
    from metabench.pending import pending_folder

    if pending_folder(store.path, run_id).is_dir():  # its cells wait in side files
        return
    with suppress(MetabenchError):
        store.discard_run_if_empty(run_id)


def _store_side_files(store: Store, run_id: str) -> None:
    from metabench.pending import store_pending

    keys = store_pending(store, run_id)
    if keys:
        _say(f"stored {len(keys)} cell(s) kept in side files while the store was locked: "
             f"{', '.join(keys)}")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Work:
    """A resolved comparison: the plan, the device and the built data sets."""

    plan: Plan
    device: torch.device
    datasets: dict[str, Dataset]
    backend: Backend
    test_datasets: dict[str, Dataset]


def prepare(config: Config) -> Work:
    """Load the configuration's plugins, resolve names, the backend, the device and the
    data sets: every user error surfaces here, before anything is written."""
    load_plugins(config.plugins)
    plan = build_plan(config)
    backend = get_backend(config.backend, config)
    datasets, tests = build_datasets(plan)
    return Work(plan, resolve_device(config.device), datasets, backend, tests)


def _outcome(store: Store, run_id: str, config: Config, ran: int) -> RunOutcome:
    return RunOutcome(run_id, store.path, config, store.episodes_frame(run_id),
                      store.cells_frame(run_id), ran)


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
              config_file: str | Path | None, resume: str) -> tuple[str, Config]:
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
    merged = configure(given, config_file, stored)
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


def _execute_plan(store: Store, run_id: str, work: Work, retry_failed: bool,
                  progress: bool) -> int:
    if retry_failed:
        store.delete_cells(run_id, sorted(store.cell_keys(run_id, ("failed",))))
    done = store.cell_keys(run_id)
    pending = [cell for cell in work.plan.cells if cell.key not in done]
    _record_environment(store, run_id, work.device)
    hook = get_plugin_manager().hook
    with make_progress(progress, len(pending)) as bar:
        context = RunContext(work.plan, work.device, work.datasets, bar, work.test_datasets)

        def on_result(result: CellResult) -> None:
            save_or_keep(store, run_id, result)
            hook.cell_finished(cell=result.cell, result=result)
            bar.cell_done(result)

        job = Job(pending, work.plan, lambda cell: run_cell(cell, context),
                  lambda cell: hook.cell_started(cell=cell), bar)
        _run_backend(store, run_id, work.backend, job, on_result)
    return len(pending)


def save_or_keep(store: Store, run_id: str, result: CellResult) -> None:
    """Store a finished cell; when the store stays locked, keep it in a side file that the
    next ``--resume`` stores (one line says so): a trained cell is never lost."""
    from metabench.pending import keep_cell

    row = result.row()
    try:
        store.save_cell(run_id, row, result.episodes)
    except StoreBusy as busy:
        path = keep_cell(store.path, run_id, row, list(result.episodes))
        _say(f"{busy}; cell {row.key} kept in {path}: `metabench compare --resume "
             f"{store.path.parent}/{run_id}` stores it")


def _run_backend(store: Store, run_id: str, backend: Backend, job: Job,
                 on_result: Callable[[CellResult], None]) -> None:
    run_marking_interruptions(backend, job, on_result,
                              lambda status: store.set_run_status(run_id, status),
                              lambda: RunInterrupted(run_id, store.path))
    failed = store.cell_keys(run_id, ("failed",))
    from metabench.pending import pending_folder

    kept = pending_folder(store.path, run_id)
    status = "interrupted" if kept.is_dir() else "failed" if failed else "complete"
    store.set_run_status(run_id, status)


def run_marking_interruptions(backend: Backend, job: Job, on_result: Callable[[CellResult], None],
                              mark: Callable[[str], None],
                              interrupted: Callable[[], KeyboardInterrupt]) -> None:
    """Run ``job`` on ``backend``; Ctrl-C or SIGTERM marks the work ``interrupted`` and
    raises ``interrupted()``, any other error marks it and propagates."""
    try:
        with sigterm_as_interrupt():
            backend.run(job, on_result)
    except KeyboardInterrupt:
        mark("interrupted")
        raise interrupted() from None
    except BaseException:
        mark("interrupted")
        raise


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler stopping the job) like Ctrl-C while the block runs.

    Only in the main thread (signal handlers can be set nowhere else); the previous handler
    is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _record_environment(store: Store, run_id: str, device: torch.device) -> None:
    record = store.run(run_id)
    info = machine_info(device)
    if record.environment:
        # A resumed run keeps its first environment and lists where it was resumed.
        info = {**record.environment,
                "resumed": [*record.environment.get("resumed", []), {"at": now(), **info}]}
    store.set_run_status(run_id, "running", environment=info)


def build_datasets(plan: Plan) -> tuple[dict[str, Dataset], dict[str, Dataset]]:
    """Build the plan's data sets, and the data sets cells are tested on where that is
    another one (``test_dataset``, keyed by the cell's ``domains``); check every spec fits
    their evaluation splits."""
    datasets: dict[str, Dataset] = {}
    tests: dict[str, Dataset] = {}
    for name in plan.task_types:
        datasets[name] = build_dataset(name, plan.config)
    for cell in plan.cells:
        if cell.tested_on != cell.dataset and cell.domains not in tests:
            tests[cell.domains] = test_dataset_for(datasets[cell.dataset], cell.tested_on,
                                                   plan.config)
    groups = {(cell.dataset, cell.domains, cell.spec): cell for cell in plan.cells}
    for (name, domains, spec), cell in groups.items():
        make_sampler(datasets[name], "validation", spec, cell.seed)
        make_sampler(tests.get(domains, datasets[name]), "test", spec, cell.seed)
    return datasets, tests


def cell_datasets(name: str, config: Config, test_name: str | None = None
                  ) -> tuple[Dataset, Dataset | None]:
    """The data set ``name`` and, when its cell tests on another one (``test_name``, default
    the first ``--test-dataset``), that data set at ``name``'s input shape (resized through
    its ``image_size`` option where it has one)."""
    from metabench.plan import test_datasets

    dataset = build_dataset(name, config)
    if test_name is None:
        test_name = next(iter(test_datasets(config)), None)
    if not test_name or test_name == name:
        return dataset, None
    return dataset, test_dataset_for(dataset, test_name, config)


def test_dataset_for(trained: Dataset, name: str, config: Config) -> Dataset:
    """The data set ``name`` as a test set of ``trained``: a source of a multi-source data set
    is that source; another is built at ``trained``'s input shape."""
    if isinstance(trained, MultiSource) and name in source_names(trained.name):
        return trained.member(name)
    return _test_dataset(name, trained, config)


def _test_dataset(name: str, trained: Dataset, config: Config) -> Dataset:
    test = build_dataset(name, config)
    _check_same_spaces(name, trained, test)
    wanted, shape = tuple(trained.input_shape), tuple(test.input_shape)
    if shape == wanted:
        return test
    resizable = (len(wanted) == 3 and len(shape) == 3 and wanted[0] == shape[0]
                 and wanted[1] == wanted[2] and _accepts(registered_name(name), "image_size"))
    if not resizable:
        raise MetabenchError(
            f"test data set '{name}' has input shape {_shape(shape)} but '{trained.name}' "
            f"trains on {_shape(wanted)}; expected the same shape ('{name}' cannot be resized "
            "to it)"
        )
    return build_dataset(name, config, image_size=wanted[1])


def _spaces(dataset: Dataset) -> str | None:
    """An rl data set's observation and action spaces as text (None for other kinds)."""
    env = getattr(dataset, "env", None)
    if env is None:
        return None
    return (f"observations of {env.observation_dim}, actions of {env.action_dim} within "
            f"+-{env.action_bound:g}")


def _check_same_spaces(name: str, trained: Dataset, test: Dataset) -> None:
    """A policy meta-trained on one environment is tested on another only when both have
    the same observation and action spaces."""
    wanted, spaces = _spaces(trained), _spaces(test)
    if wanted != spaces:
        raise MetabenchError(
            f"test data set '{name}' has {spaces or 'no observation and action spaces'} but "
            f"'{trained.name}' trains on {wanted or 'no observation and action spaces'}; "
            "expected the same spaces"
        )


def _accepts(dataset: str, option: str) -> bool:
    import inspect

    from metabench import registry

    try:
        parameters = inspect.signature(registry.get("dataset", dataset).factory).parameters
    except (TypeError, ValueError):
        return False
    return option in parameters


def _classification(dataset: Dataset) -> ClassificationDataset:
    if not isinstance(dataset, ClassificationDataset):
        raise MetabenchError(f"data set '{dataset.name}' is not a classification data set; "
                             "a multi-source data set needs classification sources")
    return dataset


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def build_dataset(name: str, config: Config, **overrides: Any) -> Dataset:
    """Construct a registered data set with the run's data options (``dataset_options``
    of ``name``, then ``overrides``); a multi-source name builds its sources, each at the
    first one's input shape."""
    if is_multi_source(name):
        first, *rest = source_names(name)
        sources = [build_dataset(first, config, **overrides)]
        sources += [_test_dataset(other, sources[0], config) for other in rest]
        return MultiSource([_classification(source) for source in sources])
    if subset_of(name):  # metaalbum:BRD: the data set BRD of metaalbum's folder
        dataset = build_dataset(registered_name(name), config, source=subset_of(name),
                                **overrides)
        dataset.name = name
        return dataset
    options = {**config.dataset_options.get(name, {}), **overrides}
    # A data set's own data_root (--dataset-option NAME.data_root=...) wins over --data-root:
    # a multi-source run reads each source from its folder.
    standard: dict[str, Any] = {"data_root": config.data_root, "download": config.download,
                "cache_dir": config.cache_dir}
    standard.update({k: options.pop(k) for k in list(options) if k in standard})
    return build_registered_dataset(name, **standard, **options)

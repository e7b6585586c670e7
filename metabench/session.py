"""A comparison run from its options to its stored results: configure, plan, run, resume.

:func:`run_comparison` is what ``metabench compare`` and :func:`metabench.compare` call.
Every cell is stored in its own transaction as it finishes; an interruption (Ctrl-C, or
SIGTERM from a scheduler, handled here so a notebook or script gets it too) marks the run
``interrupted`` and ``--resume`` finishes it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from metabench.backends import Backend, Job, get_backend
from metabench.clock import now
from metabench.config import LATEST, Config, load_toml, make_config
from metabench.data import Dataset
from metabench.environment import machine_info
from metabench.errors import MetabenchError
from metabench.pending import keep_cell, pending_folder, store_pending
from metabench.plan import Plan, build_plan
from metabench.plugins import hook_caller, load_plugins
from metabench.profiling import resolve_device
from metabench.progress import make_progress
from metabench.records import CellResult
from metabench.runner import RunContext, run_cell
from metabench.store import Store, store_path
from metabench.store_file import StoreBusy
from metabench.store_schema import check_store_file
from metabench.tuned import resolve_tuned
from metabench.typed import latest_same_run, typed_config
from metabench.workspace import build_datasets, sigterm_as_interrupt


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
    :func:`prepare`. Nothing here needs a plugin: options are checked for form only
    (:func:`metabench.typed.typed_config` then reads values against their algorithm and
    data set).
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
    config = typed_config(configure(given, config_file))
    config, location, resume_id = _resume_target(config, given, resume)
    if config.tuned and (resume_id is None or resume_id == LATEST):
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
    if pending_folder(store.path, run_id).is_dir():  # its cells wait in side files
        return
    with suppress(MetabenchError):
        store.discard_run_if_empty(run_id)


def _store_side_files(store: Store, run_id: str) -> None:
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
        record = latest_same_run(store, config)
        if record is None:
            raise MetabenchError(
                f"--resume: no earlier run in {store.path} has this configuration; "
                "run without --resume to start one"
            )
        return record.id, config
    record = store.run(resume)
    stored = typed_config(make_config(record.config))
    merged = typed_config(configure(given, config_file, stored))
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
    # Only the plugins that may observe cells are imported (not every installed one).
    cell_started, cell_finished = hook_caller("cell_started"), hook_caller("cell_finished")
    with make_progress(progress, len(pending)) as bar:
        context = RunContext(work.plan, work.device, work.datasets, bar, work.test_datasets)

        def on_result(result: CellResult) -> None:
            save_or_keep(store, run_id, result)
            cell_finished(cell=result.cell, result=result)
            bar.cell_done(result)

        job = Job(pending, work.plan, lambda cell: run_cell(cell, context),
                  lambda cell: cell_started(cell=cell), bar)
        _run_backend(store, run_id, work.backend, job, on_result)
    return len(pending)


def save_or_keep(store: Store, run_id: str, result: CellResult) -> None:
    """Store a finished cell; when the store stays locked, keep it in a side file that the
    next ``--resume`` stores (one line says so): a trained cell is never lost."""
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


def _record_environment(store: Store, run_id: str, device: torch.device) -> None:
    record = store.run(run_id)
    info = machine_info(device)
    if record.environment:
        # A resumed run keeps its first environment and lists where it was resumed.
        info = {**record.environment,
                "resumed": [*record.environment.get("resumed", []), {"at": now(), **info}]}
    store.set_run_status(run_id, "running", environment=info)

"""The Ray backend: each pending cell is a Ray task with its own CPUs (and GPU share).

The driver submits every cell, stores each result as it arrives (in any order), and shows
what runs on which node. A worker rebuilds what it needs from the comparison's
configuration: plugins by module name (they must be importable on every node; the local
instance this backend starts itself gets the driver's ``sys.path``), data sets from their
options (built once per worker process). Ray retries a cell whose worker process died up
to ``max_retries`` times; an algorithm's own error is a failed cell, never retried.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from metabench.backends import CellRunner, Job
from metabench.config import Config
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plan import Cell
from metabench.plugin_types import RegisterBackend
from metabench.records import CellResult

POLL_S = 0.5


class RayBackend:
    """Cells as Ray tasks, on a local instance or a cluster (``address``)."""

    def __init__(self, config: Config) -> None:
        import_ray()  # a missing Ray fails before the run is created
        self.config = config

    def run(self, job: Job, on_result: Callable[[CellResult], None]) -> None:
        """Submit every cell, hand results on as they finish; Ctrl-C cancels the tasks."""
        from metabench.session import sigterm_as_interrupt

        ray = import_ray()
        started_here = connect(ray, self.config.address)
        try:
            with sigterm_as_interrupt():  # ray.init installs a SIGTERM handler that exits
                _Driver(ray, job, on_result).run()
        finally:
            if started_here:
                ray.shutdown()


def import_ray() -> Any:
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MetabenchError("--backend ray needs Ray, which is not installed; "
                             "pip install 'ray[default]' (or metabench[ray])") from None
    return ray


def connect(ray: Any, address: str | None) -> bool:
    """Join ``address`` or the instance already running here, or start a local one (True)."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise MetabenchError(f"--address {address}: cannot connect to Ray: "
                                 f"{str(error).strip().splitlines()[0]}") from None
        return False
    # Workers of our own instance import what the driver imports (tests, --plugin modules).
    path = os.pathsep.join(p for p in sys.path if p)
    ray.init(address="local", include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}},
             **quiet)
    return True


class _Driver:
    """Submits the cells, collects results, shows running and queued cells."""

    def __init__(self, ray: Any, job: Job, on_result: Callable[[CellResult], None]) -> None:
        self.ray, self.job, self.on_result = ray, job, on_result
        self.board = _board_class(ray).remote()
        self.pending: dict[Any, Cell] = {}
        self.seen: set[str] = set()
        self.shown: tuple = ()

    def run(self) -> None:
        config = self.job.config
        task = _remote_cell(self.ray).options(
            num_cpus=config.cpus_per_cell, num_gpus=config.gpus_per_cell,
            max_retries=config.max_retries, retry_exceptions=False)
        runner = self.job.runner
        self.pending = {task.remote(config, cell, self.board, runner): cell
                        for cell in self.job.cells}
        try:
            while self.pending:
                done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
                for ref in done:
                    self.on_result(self._result(ref, self.pending.pop(ref)))
                self._show()
        except BaseException:
            for ref in self.pending:
                self.ray.cancel(ref, force=True)
            raise

    def _result(self, ref: Any, cell: Cell) -> CellResult:
        from metabench.runner import failed_cell

        try:
            result: CellResult = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:  # raised by our code on the worker
            reason = f"{type(error.cause).__name__} on a Ray worker: {_first_line(error.cause)}"
        except self.ray.exceptions.RayError as error:  # the worker process or its node died
            attempts = self.job.config.max_retries + 1
            reason = (f"worker lost {attempts} time(s), retries exhausted "
                      f"({type(error).__name__}): {_first_line(error)}")
        else:
            return result
        return failed_cell(cell, self.job.config, reason, self.job.plan.hparams_for(cell))

    def _show(self) -> None:
        running = self.ray.get(self.board.snapshot.remote())
        by_key = {cell.key: cell for cell in self.pending.values()}
        for key in running:
            if key in by_key and key not in self.seen:
                self.seen.add(key)
                self.job.started(by_key[key])
        now_running = tuple(f"{by_key[k].algorithm} {by_key[k].setting} seed {by_key[k].seed} "
                            f"@ {node}" for k, node in running.items() if k in by_key)
        queued = len(self.pending) - len(now_running)
        if (now_running, queued) != self.shown:
            self.shown = (now_running, queued)
            self.job.board.tasks(list(now_running), queued)


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else "(no message)"
    return text if len(text) <= 300 else text[:297] + "..."


_CACHE: dict[str, Any] = {}


def _remote_cell(ray: Any) -> Any:
    """The Ray task that runs one cell (defined once per process)."""
    if "task" not in _CACHE:
        _CACHE["task"] = ray.remote(run_cell_on_worker)
    return _CACHE["task"]


def _board_class(ray: Any) -> Any:
    """A tiny actor where workers say which cell they run on which node."""
    if "board" not in _CACHE:

        class Board:
            def __init__(self) -> None:
                self.running: dict[str, str] = {}

            def start(self, key: str, node: str) -> None:
                self.running[key] = node

            def finish(self, key: str) -> None:
                self.running.pop(key, None)

            def snapshot(self) -> dict[str, str]:
                return dict(self.running)

        _CACHE["board"] = ray.remote(num_cpus=0)(Board)
    return _CACHE["board"]


# --- on the worker --------------------------------------------------------------------------

_DATASETS: dict[tuple, Any] = {}


def run_cell_on_worker(config: Config, cell: Cell, board: Any,
                       runner: CellRunner | None = None) -> CellResult:
    """Run one cell in a Ray worker (with ``runner``, default :func:`run_cell`): its threads,
    plugins, data set (cached), device."""
    import torch

    from metabench.runner import RunContext, failed_cell, run_cell

    torch.set_num_threads(config.cpus_per_cell)
    node = f"{socket.gethostname()} pid {os.getpid()}"
    board.start.remote(cell.key, node)
    try:
        problems = _load_plugins(config.plugins)
        try:
            plan, device, (dataset, test) = _cell_plan(config, cell)
        except MetabenchError as error:
            reason = f"on {node}: {error}" + "".join(f"; {p}" for p in problems)
            return failed_cell(cell, config, reason)
        tests = {cell.domains: test} if test is not None else {}
        context = RunContext(plan, device, {cell.dataset: dataset}, test_datasets=tests)
        started = time.perf_counter()
        result = (runner or run_cell)(cell, context)
        result.profile["worker"] = node
        result.profile["torch_threads"] = torch.get_num_threads()
        result.profile["worker_wall_s"] = round(time.perf_counter() - started, 4)
        return result
    finally:
        board.finish.remote(cell.key)


def _load_plugins(modules: tuple[str, ...]) -> list[str]:
    """Load each plugin module on its own; what fails is reported, the rest still loads."""
    from metabench.plugins import load_plugins

    problems = []
    for module in modules:
        try:
            load_plugins([module])
        except MetabenchError as error:
            problems.append(str(error))
    return problems


def _cell_plan(config: Config, cell: Cell) -> tuple[Any, Any, Any]:
    from metabench.plan import build_plan
    from metabench.profiling import resolve_device

    plan = build_plan(_cell_config(config, cell))
    return plan, resolve_device(config.device), _dataset(cell.dataset, cell.tested_on, config)


def _cell_config(config: Config, cell: Cell) -> Config:
    """The comparison narrowed to this cell's algorithm and data set (same hyperparameters)."""
    hparams = {k: v for k, v in config.hparams.items() if k.partition("@")[0] == cell.algorithm}
    return dataclasses.replace(config, algorithms=(cell.algorithm,), datasets=(cell.dataset,),
                               hparams=hparams)


def _dataset(name: str, tested_on: str, config: Config) -> Any:
    """The data set and the one it is tested on (None: itself), built once per worker
    process for each set of data options."""
    from metabench.session import cell_datasets

    key = (name, config.data_root, config.download, config.cache_dir, tested_on,
           json.dumps(config.to_dict()["dataset_options"], sort_keys=True, default=str))
    if key not in _DATASETS:
        _DATASETS[key] = cell_datasets(name, config, tested_on)
    return _DATASETS[key]


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register("ray", RayBackend, description="cells as Ray tasks, on this machine or a cluster")

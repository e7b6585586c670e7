"""The local backend: cells one after the other in this process, or with ``--jobs N`` up to
N at once in worker processes of this machine."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

import torch

from metabench.backends.base import CellRunner, Job
from metabench.backends.order import LongestFirst
from metabench.backends.worker import first_line, run_cell_here, warm_worker
from metabench.cell import Cell
from metabench.config import DEFAULT_THREADS, Config
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterBackend
from metabench.records import CellResult

POLL_S = 0.5


class LocalBackend:
    """Runs cells on this machine; a result is handed on (and stored) as soon as it is done.

    Each cell runs with the comparison's torch threads (``--threads``, default 1), as on Ray,
    so a cell gives the same numbers on either backend. With ``--jobs 1`` (the default) the
    cells run in turn in this process; with more, up to that many run at once, each in a
    worker process (spawned, kept for the next cell) that rebuilds the cell from the
    configuration as a Ray worker does (:mod:`metabench.backends.worker`).
    """

    def __init__(self, config: Config | None = None) -> None:
        if config is not None and config.address:
            raise MetabenchError(f"--address {config.address} is for --backend ray; the local "
                                 "backend runs cells on this machine")
        self.config = config

    def run(self, job: Job, on_result: Callable[[CellResult], None]) -> None:
        """Run every cell, in this process or (``jobs`` above 1) in worker processes."""
        jobs = min(job.config.job_count(), len(job.cells))
        if jobs <= 1:
            for cell in job.cells:
                job.started(cell)
                with torch_threads(job.config.cpus_per_cell):
                    result = job.execute(cell)
                on_result(result)
            return
        _Pool(job, on_result, jobs).run()


class _Pool:
    """Keeps ``jobs`` cells running in worker processes, longest expected first
    (:mod:`metabench.backends.order`), and hands each result on as it ends."""

    def __init__(self, job: Job, on_result: Callable[[CellResult], None], jobs: int) -> None:
        self.job, self.on_result, self.jobs = job, on_result, jobs
        self.queued = LongestFirst(job.cells)
        self.running: dict[Future[CellResult], tuple[Cell, float]] = {}  # cell, start time
        self.shown: tuple = ()

    def run(self) -> None:
        executor = _executor(self.job.config, self.jobs)
        try:
            while self.queued or self.running:
                self._fill(executor)
                done, _ = wait(list(self.running), timeout=POLL_S, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    cell, started = self.running.pop(future)
                    self.queued.finished(cell, time.monotonic() - started)
                    result, lost = self._result(future, cell)
                    broken = broken or lost
                    self.on_result(result)
                if broken:  # a worker died: the pool is unusable, start a fresh one
                    _stop(executor)
                    executor = _executor(self.job.config, self.jobs)
        except BaseException:
            _stop(executor)
            raise
        executor.shutdown(wait=True)

    def _fill(self, executor: ProcessPoolExecutor) -> None:
        config, runner = self.job.config, self.job.runner
        while self.queued and len(self.running) < self.jobs:
            cell = self.queued.pop()
            self.job.started(cell)
            future = executor.submit(_run_cell, config, cell, runner)
            self.running[future] = cell, time.monotonic()
        now_running = tuple(f"{c.algorithm} {c.setting} seed {c.seed}"
                            for c, _ in self.running.values())
        if (now_running, len(self.queued)) != self.shown:
            self.shown = (now_running, len(self.queued))
            self.job.board.tasks(list(now_running), len(self.queued))

    def _result(self, future: Future[CellResult], cell: Cell) -> tuple[CellResult, bool]:
        from metabench.runner import failed_cell

        try:
            return future.result(), False
        except BrokenProcessPool as error:
            reason = f"worker process died ({type(error).__name__}): {first_line(error)}"
            lost = True
        except Exception as error:  # raised by our code in the worker, outside the cell
            reason = f"{type(error).__name__} in a worker process: {first_line(error)}"
            lost = False
        config = self.job.config
        return failed_cell(cell, config, reason, self.job.plan.hparams_for(cell)), lost


def _executor(config: Config, jobs: int) -> ProcessPoolExecutor:
    """``jobs`` spawned worker processes, each warmed for ``config``'s cells."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(config,))


def _stop(executor: ProcessPoolExecutor) -> None:
    """Drop the queued cells and end the worker processes now (the cells they run are lost)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def _start_worker(config: Config) -> None:
    """In a new worker: Ctrl-C is the driver's to handle (it ends the workers), then warm up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm_worker(config)


def _run_cell(config: Config, cell: Cell, runner: CellRunner | None) -> CellResult:
    return run_cell_here(config, cell, f"pid {os.getpid()}", runner)


@contextmanager
def torch_threads(threads: int = DEFAULT_THREADS) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register("local", LocalBackend,
             description="cells on this machine: in this process, or --jobs N at once")

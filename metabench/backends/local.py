"""The local backend: cells one after the other in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from metabench.backends.base import Job
from metabench.config import DEFAULT_THREADS, Config
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterBackend
from metabench.records import CellResult


class LocalBackend:
    """Runs cells in order in the calling process; a result is handed on before the next cell.

    Each cell runs with the comparison's torch threads (``--threads``, default 1), as on Ray,
    so a cell gives the same numbers on either backend.
    """

    def __init__(self, config: Config | None = None) -> None:
        if config is not None and config.address:
            raise MetabenchError(f"--address {config.address} is for --backend ray; the local "
                                 "backend runs cells in this process")
        self.config = config

    def run(self, job: Job, on_result: Callable[[CellResult], None]) -> None:
        """Run every cell in turn."""
        for cell in job.cells:
            job.started(cell)
            with torch_threads(job.config.cpus_per_cell):
                result = job.execute(cell)
            on_result(result)


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
    register("local", LocalBackend, description="cells one after the other in this process")

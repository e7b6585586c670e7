"""The local backend: cells one after the other in this process."""

from __future__ import annotations

from collections.abc import Callable

from metabench.backends import Job
from metabench.config import Config
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterBackend
from metabench.records import CellResult


class LocalBackend:
    """Runs cells in order in the calling process; a result is handed on before the next cell."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config

    def run(self, job: Job, on_result: Callable[[CellResult], None]) -> None:
        """Run every cell in turn."""
        for cell in job.cells:
            job.started(cell)
            on_result(job.execute(cell))


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register("local", LocalBackend, description="cells one after the other in this process")

"""The types a backend is made of: the :class:`Job` it runs, the :class:`Backend` protocol,
the cell runner and the task board. No lookups here, so a backend module (and the plugin
API's types) can import them without importing the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from metabench.cell import Cell
from metabench.config import Config
from metabench.plan import Plan
from metabench.plugin_types import BackendFactory as BackendFactory  # defined once, with the plugin API
from metabench.records import CellResult

if TYPE_CHECKING:
    from metabench.runner import RunContext

#: ``runner(cell, context)``: what runs one cell where it is sent (default
#: :func:`metabench.runner.run_cell`; tuning trials train and validate only). It must pickle
#: (a module-level function or an instance of a module-level class) to reach another process.
CellRunner = Callable[[Cell, "RunContext"], CellResult]


class TaskBoard(Protocol):
    """Where a backend shows what runs where (a progress display, or nothing)."""

    def tasks(self, running: Sequence[str], queued: int) -> None:
        """``running`` cells (with where they run), and how many wait."""


class _NoBoard:
    def tasks(self, running: Sequence[str], queued: int) -> None:
        pass


@dataclass
class Job:
    """The pending cells of a plan and what a backend needs to run them.

    ``execute(cell)`` runs a cell in this process with the driver's data sets and progress
    (the local backend's way); a backend that runs cells elsewhere rebuilds them from
    ``plan.config`` (plugins by module name, data sets by their options), runs each with
    ``runner(cell, context)`` (None: :func:`metabench.runner.run_cell`) and calls
    ``started(cell)`` when a cell starts there, so observers see it.
    """

    cells: list[Cell]
    plan: Plan
    execute: Callable[[Cell], CellResult]
    started: Callable[[Cell], None]
    board: TaskBoard = field(default_factory=_NoBoard)
    runner: CellRunner | None = None

    @property
    def config(self) -> Config:
        """The comparison's configuration (device, data and backend options)."""
        return self.plan.config


class Backend(Protocol):
    """Runs a job's cells and hands each result to ``on_result`` as soon as it is finished."""

    def run(self, job: Job, on_result: Callable[[CellResult], None]) -> None:
        """Run every cell of ``job``; call ``on_result`` (in this thread) after each one."""


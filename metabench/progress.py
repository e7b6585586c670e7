"""Progress display for a comparison: a run bar and a phase bar on stderr, or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from metabench.cell import Cell
from metabench.metrics import metric_for
from metabench.records import CellResult
from metabench.runner import NullProgress


def make_progress(enabled: bool, cells: int) -> Any:
    """A rich progress display for ``cells`` cells, or one that shows nothing (also when
    there is nothing to run, as when a finished run is resumed)."""
    return RichProgress(cells) if enabled and cells > 0 else nullcontext(_QuietBar())


class RichProgress:
    """A bar for the run (cells done) and one for the running cell's phase, on stderr."""

    def __init__(self, cells: int) -> None:
        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} {task.fields[unit]}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, refresh_per_second=4,
        )
        self.cells = cells
        self._run: TaskID | None = None
        self._phase: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        self._run = self.bars.add_task("cells", total=self.cells, unit="cells")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def phase(self, cell: Cell, name: str, total: float, unit: str) -> None:
        """Replace the phase bar with one for ``cell``'s phase ``name``."""
        self._drop_phase()
        label = f"{cell.algorithm} {cell.setting} seed {cell.seed}: {name}"
        self._phase = self.bars.add_task(label, total=total, unit=unit)

    def update(self, completed: float) -> None:
        """Move the phase bar."""
        if self._phase is not None:
            self.bars.update(self._phase, completed=completed)

    def tasks(self, running: Sequence[str], queued: int) -> None:
        """Show the cells running elsewhere (with their node) and how many are queued."""
        self._drop_phase()
        shown = ", ".join(running[:4]) + (f" and {len(running) - 4} more" if len(running) > 4 else "")
        label = escape(f"running {len(running)}: {shown} · queued {queued}" if running
                       else f"queued {queued}")
        self._phase = self.bars.add_task(label, total=len(running) + queued,
                                         completed=len(running), unit="started")

    def cell_done(self, result: CellResult) -> None:
        """Drop the phase bar, advance the run bar and print the cell's outcome."""
        self._drop_phase()
        if self._run is not None:
            self.bars.advance(self._run)
        self.bars.console.print(_outcome_line(result), highlight=False)

    def _drop_phase(self) -> None:
        if self._phase is not None:
            self.bars.remove_task(self._phase)
            self._phase = None


def _outcome_line(result: CellResult) -> str:
    """The cell's outcome as rich markup; names and reasons from plugins are escaped."""
    cell = result.cell
    name = escape(f"{cell.algorithm} {cell.setting} seed {cell.seed}")
    if result.status != "ok":
        return f"[{'red' if result.status == 'failed' else 'yellow'}]{result.status}[/] {name}: " \
               f"{escape(result.reason)}"
    metric = metric_for(cell.spec.task_type)
    if not result.episodes:  # a tuning trial: validated, never tested
        points = [point[f"val_{metric.name}"] for point in result.curve]
        best = max(points, key=metric.score) if points else float("nan")
        return f"[green]ok[/] {name}: validation {metric.format_value(best)} after " \
               f"{result.steps} steps ({result.train_episodes} episodes)"
    values = [getattr(row, metric.name) for row in result.episodes]
    mean = sum(values) / max(len(values), 1)
    return f"[green]ok[/] {name}: {metric.format_value(mean)} after {result.steps} steps " \
           f"({result.train_episodes} episodes)"


class _QuietBar(NullProgress):
    """Progress that shows nothing, cell outcomes included."""

    def cell_done(self, result: CellResult) -> None:
        pass

    def tasks(self, running: Sequence[str], queued: int) -> None:
        pass

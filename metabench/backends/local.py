"""The local backend: cells one after the other in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from metabench.plan import Cell
from metabench.records import CellResult


class LocalBackend:
    """Runs cells in order in the calling process; a result is handed on before the next cell."""

    def run(
        self,
        cells: Iterable[Cell],
        execute: Callable[[Cell], CellResult],
        on_result: Callable[[CellResult], None],
    ) -> None:
        """Run every cell in turn."""
        for cell in cells:
            on_result(execute(cell))

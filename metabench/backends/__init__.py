"""Backends: where the cells of a plan run (``local`` now; ``ray`` later)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from metabench.errors import unknown_name_error
from metabench.plan import Cell
from metabench.records import CellResult


class Backend(Protocol):
    """Runs cells and hands each result to ``on_result`` as soon as it is finished."""

    def run(
        self,
        cells: Iterable[Cell],
        execute: Callable[[Cell], CellResult],
        on_result: Callable[[CellResult], None],
    ) -> None:
        """Run ``execute(cell)`` for every cell; call ``on_result`` after each one."""


def get_backend(name: str = "local") -> Backend:
    """The backend called ``name``."""
    from metabench.backends.local import LocalBackend

    backends: dict[str, Callable[[], Backend]] = {"local": LocalBackend}
    if name not in backends:
        raise unknown_name_error("backend", name, backends)
    return backends[name]()

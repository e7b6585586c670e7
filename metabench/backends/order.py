"""Which queued cell a pool of workers starts next: the one expected to take longest.

Cells are not divisible, so the run ends when its last cell does: a long cell started last
leaves the other workers idle (the default comparison lost a fifth of its wall time that
way). Longest first keeps them busy until the end. Nothing about an algorithm is known
before it runs, so the expectation is learned during the run: a cell whose algorithm has
finished a cell on the same data set is expected to take as long as that one did (the
mean, if several); a cell of an algorithm not seen yet counts as longest, so it starts
early and is measured. Ties go to the larger episodes (ways x (shots + queries)), then to
the plan's order. The order decides only when a cell starts, never what it computes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from metabench.cell import Cell


class LongestFirst:
    """The queued cells of a run, handed out longest expected first."""

    def __init__(self, cells: Iterable[Cell]) -> None:
        self.queued = list(cells)
        self._seconds: dict[tuple[str, str], list[float]] = {}

    def __len__(self) -> int:
        return len(self.queued)

    def __bool__(self) -> bool:
        return bool(self.queued)

    def finished(self, cell: Cell, seconds: float) -> None:
        """Record how long ``cell`` took (seconds of wall time in its worker)."""
        self._seconds.setdefault(_kind(cell), []).append(seconds)

    def expected(self, cell: Cell) -> float:
        """Seconds ``cell`` is expected to take (infinite while its kind is unmeasured)."""
        seen = self._seconds.get(_kind(cell))
        return sum(seen) / len(seen) if seen else math.inf

    def pop(self) -> Cell:
        """Take the queued cell to start next."""
        best = max(range(len(self.queued)), key=lambda i: (
            self.expected(self.queued[i]), _episode_size(self.queued[i]), -i))
        return self.queued.pop(best)


def _kind(cell: Cell) -> tuple[str, str]:
    return cell.algorithm, cell.dataset


def _episode_size(cell: Cell) -> int:
    spec = cell.spec
    return max(spec.ways, 1) * (spec.shots + spec.queries)

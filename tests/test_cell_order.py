"""metabench.backends.order: a pool starts the cell expected to take longest."""

from __future__ import annotations

import heapq

from metabench.backends.order import LongestFirst
from metabench.cell import Cell
from metabench.protocol import TaskSpec

# Seconds each cell of the default comparison took in its worker (glyphs, time:15s, 600 test
# episodes; `make compare` on the 2-core machine, 2026-12-06).
MEASURED = {("fomaml", 1): 51.0, ("maml", 1): 52.0, ("protonet", 1): 29.0, ("reptile", 1): 79.0,
            ("maml", 5): 94.0, ("fomaml", 5): 94.0, ("protonet", 5): 34.0, ("reptile", 5): 79.0}


def cell(algorithm: str, shots: int, dataset: str = "glyphs") -> Cell:
    return Cell(algorithm, dataset, TaskSpec(ways=5, shots=shots, queries=15), 0, "conv4")


def plan_order() -> list[Cell]:
    return [cell(a, s) for s in (1, 5) for a in ("fomaml", "maml", "protonet", "reptile")]


def makespan(order: LongestFirst | list[Cell], workers: int = 2) -> float:
    """Simulate a pool: each free worker takes the next cell; the run's wall time."""
    queue = order if isinstance(order, LongestFirst) else None
    cells = list(order) if isinstance(order, list) else []
    running: list[tuple[float, int, Cell]] = []
    now, counter = 0.0, 0
    while cells or queue or running:
        while len(running) < workers and (cells or queue):
            started = queue.pop() if queue else cells.pop(0)
            heapq.heappush(running, (now + MEASURED[(started.algorithm, started.spec.shots)],
                                     counter, started))
            counter += 1
        now, _, done = heapq.heappop(running)
        if queue is not None:
            queue.finished(done, MEASURED[(done.algorithm, done.spec.shots)])
    return now


def test_unmeasured_cells_go_first_larger_episodes_then_plan_order() -> None:
    order = LongestFirst(plan_order())
    assert [order.pop() for _ in range(2)] == [cell("fomaml", 5), cell("maml", 5)]


def test_measured_algorithms_are_expected_to_take_their_mean() -> None:
    order = LongestFirst([cell("protonet", 5), cell("maml", 5), cell("maml", 1)])
    order.finished(cell("maml", 1), 50.0)
    order.finished(cell("protonet", 1), 20.0)
    order.finished(cell("protonet", 1, dataset="omniglot"), 500.0)  # another data set
    assert order.expected(cell("maml", 5)) == 50.0
    assert order.expected(cell("protonet", 5)) == 20.0
    assert [order.pop(), order.pop(), order.pop()] == [
        cell("maml", 5), cell("maml", 1), cell("protonet", 5)]
    assert not order


def test_the_default_comparison_ends_sooner_than_in_plan_order() -> None:
    assert makespan(plan_order()) == 287.0
    assert makespan(LongestFirst(plan_order())) == 259.0
    assert sum(MEASURED.values()) / 2 == 256.0  # the best any order can do

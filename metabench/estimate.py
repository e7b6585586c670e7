"""How long a run will take on this machine, from a few timed steps of each kind of cell.

Each distinct (algorithm, data set, setting) of a plan runs once as a short probe through
the real runner: two rounds of training of about a second each, a few validation and test
episodes. The second round's time per step (episode sampling included, warm-up excluded,
averaged over as many steps as fit in a second, so short steps are not at the mercy of one
stall) and the evaluation speed then scale to the plan's budget, test and validation
episodes. Seeds repeat a probe's estimate. Nothing is stored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from metabench.budget import Budget
from metabench.cell import Cell
from metabench.plan import Plan
from metabench.runner import RunContext, run_cell
from metabench.session import Work

PROBE_SECONDS = 1.0  # per round
PROBE_EPISODES = 8


@dataclass(frozen=True)
class CellCost:
    """What one probe measured: seconds per training step, training episodes charged per
    step, and evaluation episodes per second."""

    step_s: float
    episodes_per_step: float
    eval_episodes_per_s: float

    def seconds(self, budget: Budget, evaluation_episodes: int) -> float:
        """Estimated seconds of a cell with this budget and this many evaluated episodes."""
        if budget.kind == "time":
            train = budget.amount
        else:
            steps = budget.amount if budget.kind == "steps" else (
                budget.amount / max(self.episodes_per_step, 1e-9))
            train = steps * self.step_s
        return train + evaluation_episodes / max(self.eval_episodes_per_s, 1e-9)


@dataclass(frozen=True)
class Estimate:
    """Estimated wall time of a plan at its budget (``seconds``) and at another one
    (``reference_seconds``, e.g. the paper's full budget)."""

    seconds: float
    reference_seconds: float
    cells: int
    probes: int


def estimate_run(work: Work, reference: Callable[[Cell], Budget] | None = None,
                 on_probe: Callable[[Cell], None] | None = None) -> Estimate:
    """Probe each kind of cell of ``work`` and add up the plan's cells (sequential);
    ``reference`` gives each cell's budget at the reference scale (the paper's)."""
    plan = work.plan
    costs = _probe_costs(work, on_probe)
    config = plan.config
    evaluated = config.episodes + config.val_points * config.val_episodes
    seconds = reference_seconds = 0.0
    runnable = [cell for cell in plan.cells if not plan.skip_reason(cell)]
    for cell in runnable:
        cost = costs[_kind(cell)]
        budget = plan.budget_for(cell)
        seconds += cost.seconds(budget, evaluated)
        reference_seconds += cost.seconds(reference(cell) if reference else budget, evaluated)
    return Estimate(seconds, reference_seconds, len(runnable), len(costs))


def _kind(cell: Cell) -> tuple:
    return cell.algorithm, cell.dataset, cell.tested_on, cell.spec


def _probe_costs(work: Work, on_probe: Callable[[Cell], None] | None) -> dict[tuple, CellCost]:
    probe_plan = _probe_plan(work.plan)
    context = RunContext(probe_plan, work.device, work.datasets, test_datasets=work.test_datasets)
    costs: dict[tuple, CellCost] = {}
    for cell in work.plan.cells:
        if _kind(cell) in costs or work.plan.skip_reason(cell):
            continue
        if on_probe is not None:
            on_probe(cell)
        costs[_kind(cell)] = _probe(cell, context)
    return costs


def _probe_plan(plan: Plan) -> Plan:
    config = dataclasses.replace(plan.config, budget=Budget("time", 2.0 * PROBE_SECONDS),
                                 budgets={}, val_points=2,
                                 val_episodes=min(plan.config.val_episodes, PROBE_EPISODES),
                                 episodes=PROBE_EPISODES)
    return dataclasses.replace(plan, config=config, budget=config.budget)


def _probe(cell: Cell, context: RunContext) -> CellCost:
    result = run_cell(cell, context)
    profile: Mapping = result.profile
    if result.status != "ok":
        return CellCost(math.nan, 1.0, math.nan)
    speed = profile.get("eval_episodes_per_s") or math.nan
    return CellCost(_step_seconds(result.curve, profile),
                    float(profile.get("episodes_per_step") or 1.0), float(speed))


def _step_seconds(curve: list[dict], profile: Mapping) -> float:
    """Seconds per training step between the probe's two validation points (the first
    round's warm-up left out); the median step time when the curve has no second point."""
    if len(curve) >= 2 and curve[-1]["step"] > curve[0]["step"]:
        return (curve[-1]["seconds"] - curve[0]["seconds"]) / (curve[-1]["step"] - curve[0]["step"])
    return float(profile.get("train_step_median_s") or math.nan)


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h`` or ``2.1 days``; ``unknown`` for NaN."""
    if math.isnan(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"

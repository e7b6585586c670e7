"""What each task type is scored by: the metric's name, its direction and how it prints.

This is the one description the runner, the statistics, the progress lines and the
reports read; a new task type adds one entry to :data:`TASK_METRICS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metabench.errors import MetabenchError
from metabench.protocol import CLASSIFICATION, REGRESSION, RL


@dataclass(frozen=True)
class Metric:
    """A per-episode score: its column name, its direction and its display."""

    name: str
    higher_is_better: bool
    percent: bool = False
    description: str = ""

    def score(self, value: float) -> float:
        """``value`` signed so that higher is always better (for ranking and best-of)."""
        return value if self.higher_is_better else -value

    def format_value(self, value: float) -> str:
        """One value as a person reads it: ``45.20%`` or ``mse 0.1234``."""
        if self.percent:
            return f"{100 * value:.2f}%"
        return f"{self.name} {value:.4g}"

    def format_mean_ci(self, mean: float, ci: float) -> str:
        """``45.20 ± 1.10`` (percent points); otherwise to the precision of the interval,
        two significant digits of the half-width: ``2.45 ± 0.58``, ``0.1234 ± 0.0041``."""
        if self.percent:
            mean, ci = 100 * mean, 100 * ci
            return f"{mean:.2f} ± {ci:.2f}" if not math.isnan(ci) else f"{mean:.2f}"
        if math.isnan(ci) or ci <= 0 or math.isinf(ci):
            return f"{mean:.4g}"
        decimals = max(0, 1 - math.floor(math.log10(ci)))
        return f"{mean:.{decimals}f} ± {ci:.{decimals}f}"

    def format_score(self, mean: float, ci: float) -> str:
        """Mean ± interval with its unit: ``45.20 ± 1.10 %`` or ``mse 2.45 ± 0.58``."""
        text = self.format_mean_ci(mean, ci)
        return f"{text} %" if self.percent else f"{self.name} {text}"


ACCURACY = Metric("accuracy", higher_is_better=True, percent=True,
                  description="share of query examples classified correctly")
MSE = Metric("mse", higher_is_better=False, description="mean squared error on the query points")
LOSS = Metric("loss", higher_is_better=False, description="the task's loss on the query set")
RETURN = Metric("avg_return", higher_is_better=True,
                description="mean return of the query trajectories after adapting")

METRICS: dict[str, Metric] = {metric.name: metric for metric in (ACCURACY, MSE, LOSS, RETURN)}
TASK_METRICS: dict[str, Metric] = {CLASSIFICATION: ACCURACY, REGRESSION: MSE, RL: RETURN}


def metric_for(task_type: str) -> Metric:
    """The metric a task type is scored by."""
    try:
        return TASK_METRICS[task_type]
    except KeyError:
        known = ", ".join(sorted(TASK_METRICS))
        raise MetabenchError(f"task type '{task_type}' has no metric; known: {known}") from None


def metric_named(name: str) -> Metric:
    """The metric with this column name."""
    try:
        return METRICS[name]
    except KeyError:
        raise MetabenchError(f"metric '{name}' is not known; known: {', '.join(sorted(METRICS))}") from None

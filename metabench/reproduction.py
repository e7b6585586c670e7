"""``metabench reproduce``: run a paper preset through ``compare`` and read it against the paper.

:func:`reproduce` is the library call behind the command: it builds the preset's comparison
(scaled, narrowed, with the caller's options), runs it with the planner, runner and store
of ``compare`` (so it resumes, exports and reports like any run), and returns the run with
one :class:`metabench.presets.Comparison` per published result it measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from metabench.budget import Budget
from metabench.cell import Cell, domains_label
from metabench.config import Config, check_number
from metabench.errors import MetabenchError
from metabench.estimate import Estimate, estimate_run
from metabench.metrics import Metric, metric_named
from metabench.plan import setting_qualifiers
from metabench.presets import Comparison, Preset, departures, verdict
from metabench.protocol import setting_label
from metabench.registry import get_preset
from metabench.reports.leaderboard import leaderboard
from metabench.session import RunOutcome, prepare, run_comparison


@dataclass
class Reproduction:
    """A preset's run and its rows read against the paper."""

    name: str
    preset: Preset
    outcome: RunOutcome
    rows: list[Comparison] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """The rows as a table (published and measured in the paper's units)."""
        return pd.DataFrame([row.as_dict() for row in self.rows])


def preset_config(name: str, scale: float = 1.0, only: str | None = None,
                  options: Mapping[str, Any] | None = None) -> Config:
    """The comparison that reproduces preset ``name`` (see :meth:`Preset.config`); ``scale``
    must be a finite number above 0 (at most 1000)."""
    check_number("scale", scale, None, 1000)
    if not scale > 0:
        raise MetabenchError(f"scale={scale} must be positive (above 0, at most 1000; 0.05: 5% "
                             "of the paper's budget)")
    return get_preset(name).config(name, scale, only, options)


def estimate(config: Config, on_probe: Callable[[Cell], None] | None = None) -> Estimate:
    """The run's estimated wall time here, and at the preset's full budget (``--scale 1``)."""
    work = prepare(config)
    full = get_preset(config.preset).base_config(config.preset) if config.preset else config

    def full_budget(cell: Cell) -> Budget:
        return full.budget_for(setting_qualifiers(cell.spec))

    return estimate_run(work, full_budget, on_probe)


def reproduce(name: str, scale: float = 1.0, only: str | None = None,
              options: Mapping[str, Any] | None = None, resume: str | None = None,
              progress: bool = True) -> Reproduction:
    """Run preset ``name`` (at ``scale`` of its budget, narrowed to ``only``) and compare."""
    config = preset_config(name, scale, only, options)
    outcome = run_comparison(config.to_dict(), resume=resume, progress=progress)
    return Reproduction(name, get_preset(name), outcome, comparisons(outcome, name))


def comparisons(outcome: RunOutcome, name: str) -> list[Comparison]:
    """Each published result of the preset that the run measured, with its verdict."""
    config = outcome.config
    table = leaderboard(outcome.episodes, outcome.cells, config.confidence, config.margin,
                        config.alpha)
    return comparisons_of_table(table, config, get_preset(name), name)


def comparisons_of_table(table: pd.DataFrame, config: Config, preset: Preset,
                         name: str) -> list[Comparison]:
    """The rows of a leaderboard that have a published counterpart in ``preset``."""
    base = preset.base_config(name)
    wanted = {domains_label(d, base.test_dataset) for d in base.datasets}
    gaps = departures(config, preset, name) + ([preset.incomparable] if preset.incomparable else [])
    rows = []
    for row in table.to_dict("records"):
        setting = setting_label(row["task_type"], row["ways"], row["shots"])
        published = preset.published_for(str(row["algorithm"]), setting)
        if published is None:
            continue
        domain = domains_label(row["dataset"], row.get("test_dataset"))
        extra = [] if domain in wanted else [f"data set is {domain}, the paper's is "
                                             f"{', '.join(sorted(wanted))}"]
        metric = metric_named(row["metric"])
        result = verdict(published, metric, row["mean"], row["ci"], config.scale, gaps + extra)
        main = Comparison(setting, str(row["algorithm"]), published, row["mean"], row["ci"],
                          metric, result)
        curve = _curve_comparisons(row, preset, setting, metric, config.scale, gaps + extra)
        # The main score is the return after one adaptation step: step 0 goes before it.
        rows += [c for c in curve if c.step == 0] + [main] + [c for c in curve if c.step != 0]
    return rows


def _curve_comparisons(row: Mapping[Any, Any], preset: Preset, setting: str, metric: Metric,
                       scale: float, departures: list[str]) -> list[Comparison]:
    """The published points of the row's adaptation curve against the measured ones (a run
    with ``curve_steps``); a point the run did not measure is left out."""
    means, cis = row.get("curve_mean"), row.get("curve_ci")
    if not isinstance(means, list) or not isinstance(cis, list):
        return []
    found = []
    for point in preset.published_curve(str(row["algorithm"]), setting):
        step = int(point.step or 0)
        if step < len(means):
            result = verdict(point, metric, means[step], cis[step], scale, departures)
            found.append(Comparison(setting, str(row["algorithm"]), point, means[step],
                                    cis[step], metric, result, step))
    return found

"""Paper presets: a paper's protocol as a ``compare`` configuration, with its published table.

A preset is data: the options of a comparison (algorithms, data set and its options, ways,
shots, queries, test episodes, budget in the paper's meta-iterations, hyperparameters, per
setting where the paper changes them) and the results the paper published, each with its
interval, the interval's kind and where it is printed. Plugins register presets through
``register_presets`` (the built-in ones in ``metabench_plugins.papers``); ``metabench
reproduce`` runs one and reads the run against the published numbers (:func:`verdict`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metabench import registry
from metabench.cell import domains_label
from metabench.config import Config
from metabench.metrics import Metric
from metabench.preset_types import INTERVAL_KINDS as INTERVAL_KINDS
from metabench.preset_types import Preset as Preset
from metabench.preset_types import Published as Published
from metabench.preset_types import narrowed as narrowed
from metabench.preset_types import restricted as restricted
from metabench.protocol import CLASSIFICATION, setting_label
from metabench.registry import all_presets as all_presets
from metabench.registry import get_preset as get_preset

# Options a reproduction may change without leaving the paper's protocol: how many test
# episodes and seeds (the interval's width), validation effort, and where things run.
FREE_FIELDS = ("episodes", "seeds", "val_episodes", "val_points", "preset", "scale")
VERDICTS = ("reproduced", "below", "above", "not comparable")


def describe(name: str, preset: Preset) -> dict[str, Any]:
    """A JSON-ready summary of a preset for ``metabench reproduce`` listings."""
    config = preset.base_config(name)
    return {
        "name": name, "title": preset.title, "source": preset.source,
        "algorithms": list(config.algorithms),
        "datasets": [domains_label(d, config.test_dataset) for d in config.datasets],
        "settings": settings_of(config),
        "budget": config.budget_text(), "requires": preset.requires, "notes": list(preset.notes),
        "published": [dataclasses.asdict(p) for p in preset.published],
        "compare": config.plan_fields(),
    }


def settings_of(config: Config) -> list[str]:
    """The setting labels a configuration runs (``5w1s``, ``10shot``)."""
    types = {t for d in config.datasets for t in registry.get("dataset", d).task_types}
    task_type = next(iter(types), CLASSIFICATION)
    ways = config.ways if task_type == CLASSIFICATION else config.ways[:1]
    return [setting_label(task_type, w, s) for w in ways for s in config.shots]



# --- reading a run against the paper ----------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """How a measured result reads against the published one.

    ``outcome``: ``reproduced`` (the intervals overlap), ``below`` or ``above`` (numerically;
    for MSE below is better), or ``not comparable``: the run departs from the paper's
    protocol, ``reason`` says how (a scaled budget is such a departure; ``position`` then
    still says where the measured interval lies: ``overlapping``, ``below`` or ``above``).
    """

    outcome: str
    scale: float = 1.0
    reason: str = ""
    position: str = ""

    def text(self) -> str:
        """``reproduced``, ``below``, or ``not comparable: at 5% of the paper's budget
        (measured below)``."""
        if self.outcome != "not comparable":
            return self.outcome
        where = {"overlapping": " (the intervals overlap)", "below": " (measured below)",
                 "above": " (measured above)"}.get(self.position, "")
        return f"not comparable: {self.reason}{where}"


VERDICT_RULE = ("verdict: reproduced when the measured interval and the published one overlap; "
                "a published value without an interval is read as a point: reproduced when it "
                "lies inside the measured interval, else below or above")


def verdict(published: Published, metric: Metric, mean: float, ci: float, scale: float = 1.0,
            departures: Sequence[str] = ()) -> Verdict:
    """Read a measured mean ± ci (stored units) against a published result (the rule:
    :data:`VERDICT_RULE`; a published value with no interval is a point)."""
    position = _position(published, metric, mean, ci)
    reasons = list(departures)
    if not math.isclose(scale, 1.0):
        reasons.insert(0, f"at {100 * scale:g}% of the paper's budget (--scale {scale:g})")
    if reasons:
        return Verdict("not comparable", scale, "; ".join(reasons), position)
    outcome = "reproduced" if position == "overlapping" else position
    return Verdict(outcome, scale, position=position)


def _position(published: Published, metric: Metric, mean: float, ci: float) -> str:
    """``overlapping``, ``below`` or ``above``: where the measured interval lies."""
    low, high = published.bounds(metric)
    half = 0.0 if math.isnan(ci) else ci
    if mean + half < low:
        return "below"
    if mean - half > high:
        return "above"
    return "overlapping"


def departures(config: Config, preset: Preset, name: str) -> list[str]:
    """How a run's configuration departs from the preset's protocol (empty: it follows it).

    The budget is compared at the run's scale, algorithms and settings as narrowed; test
    episodes, seeds and validation effort may differ (they change intervals, not protocol).
    """
    expected = restricted(dataclasses.replace(preset.base_config(name), ways=config.ways,
                                              shots=config.shots), config.algorithms)
    expected = expected.scaled(config.scale)
    ran, wanted = config.plan_fields(), expected.plan_fields()
    keys = [key for key in dict.fromkeys([*wanted, *ran])
            if key not in FREE_FIELDS and ran.get(key) != wanted.get(key)]
    return [gap for key in keys for gap in _differences(key, ran.get(key), wanted.get(key))]


def _differences(key: str, ran: Any, wanted: Any) -> list[str]:
    """``key`` differs: one line, or one per differing entry of a table (``hparams
    maml.meta_lr is 0.01, the paper's is 0.001``)."""
    if isinstance(ran, Mapping) and isinstance(wanted, Mapping):
        return [gap for name in dict.fromkeys([*wanted, *ran]) if ran.get(name) != wanted.get(name)
                for gap in _differences(f"{key} {name}" if " " not in key else f"{key}.{name}",
                                        ran.get(name), wanted.get(name))]
    return [f"{key} is {_show(ran)}, the paper's is {_show(wanted)}"]


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "(none)"
    return "(none)" if value in (None, {}) else repr(value) if isinstance(value, str) else str(value)


@dataclass
class Comparison:
    """One row of a reproduction: published and measured, side by side."""

    setting: str
    algorithm: str
    published: Published
    mean: float
    ci: float
    metric: Metric
    verdict: Verdict = field(default_factory=lambda: Verdict("reproduced"))
    step: int | None = None

    @property
    def difference(self) -> float:
        """Measured minus published, in the paper's units (percent points for accuracy)."""
        unit = 100.0 if self.metric.percent else 1.0
        return unit * self.mean - self.published.value

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row."""
        unit = 100.0 if self.metric.percent else 1.0
        return {"setting": self.setting, "algorithm": self.algorithm,
                "published": self.published.value, "published_interval": self.published.interval,
                "interval_kind": self.published.interval_kind, "source": self.published.source,
                "measured": unit * self.mean, "measured_ci": unit * self.ci,
                "difference": self.difference, "verdict": self.verdict.outcome,
                "position": self.verdict.position, "scale": self.verdict.scale,
                "reason": self.verdict.reason, "step": self.step}

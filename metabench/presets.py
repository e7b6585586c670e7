"""Paper presets: a paper's protocol as a ``compare`` configuration, with its published table.

A preset is data: the options of a comparison (algorithms, data set and its options, ways,
shots, queries, test episodes, budget in the paper's meta-iterations, hyperparameters, per
setting where the paper changes them) and the results the paper published, each with its
interval, the interval's kind and where it is printed. Plugins register presets through
``register_presets`` beside their algorithms; ``metabench reproduce`` runs one and reads
the run against the published numbers (:func:`verdict`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metabench import registry
from metabench.config import Config, make_config
from metabench.errors import MetabenchError
from metabench.metrics import Metric
from metabench.plan import domains_label
from metabench.protocol import CLASSIFICATION, setting_label

# Options a reproduction may change without leaving the paper's protocol: how many test
# episodes and seeds (the interval's width), validation effort, and where things run.
FREE_FIELDS = ("episodes", "seeds", "val_episodes", "val_points", "preset", "scale")
# "unknown": the paper prints ± without saying what it is.
INTERVAL_KINDS = ("95% CI", "std", "standard error", "unknown", "")
VERDICTS = ("reproduced", "below", "above", "not comparable")


@dataclass(frozen=True)
class Published:
    """One published result.

    ``value`` and ``interval`` are as the paper prints them: percent for accuracy, the raw
    value for MSE. ``interval_kind`` is ``95% CI``, ``std``, ``standard error``, ``unknown``
    (the paper does not say) or empty (no interval given). ``step``: a point of an rl
    adaptation curve (the return after that many adaptation steps, read against a run with
    ``curve_steps``); None for the setting's main score.
    """

    algorithm: str
    setting: str
    value: float
    interval: float | None = None
    interval_kind: str = "95% CI"
    source: str = ""
    step: int | None = None

    def __post_init__(self) -> None:
        if self.interval_kind not in INTERVAL_KINDS:
            raise MetabenchError(f"published interval kind {self.interval_kind!r} is not known; "
                                 f"expected one of: {', '.join(k for k in INTERVAL_KINDS if k)}, "
                                 "or '' (none)")
        if self.step is not None and self.step < 0:
            raise MetabenchError(f"published step {self.step} is negative")
        if self.interval is not None and self.interval < 0:
            raise MetabenchError(f"published interval {self.interval} is negative")

    def bounds(self, metric: Metric) -> tuple[float, float]:
        """The published interval in the metric's stored units (accuracy as a fraction)."""
        unit = 100.0 if metric.percent else 1.0
        half = (self.interval or 0.0) / unit
        return self.value / unit - half, self.value / unit + half

    def text(self) -> str:
        """``98.7 ± 0.4 (95% CI)``, or ``98.8`` when the paper gives no interval."""
        if self.interval is None:
            return f"{self.value:g}"
        label = "± of unstated kind" if self.interval_kind == "unknown" else self.interval_kind
        kind = f" ({label})" if label else ""
        return f"{self.value:g} ± {self.interval:g}{kind}"


@dataclass(frozen=True)
class Preset:
    """A paper's protocol and results.

    :param title: e.g. ``MAML and first-order MAML on Omniglot``.
    :param source: the paper: authors, year, venue or arXiv id.
    :param compare: the options of ``metabench compare`` (as in a TOML file): keys of
        :class:`metabench.config.Config`, e.g. ``algorithms``, ``datasets``,
        ``dataset_options``, ``ways``, ``shots``, ``queries``, ``episodes``, ``budget``
        (``steps:N`` = the paper's meta-iterations), ``hparams`` (``maml@20w`` tables for
        one setting), ``variants``, ``checkpoint``.
    :param published: the paper's numbers.
    :param notes: what differs from the paper, and why.
    :param requires: what a user must have, e.g. the data files (shown in the listing).
    :param incomparable: why no run of this preset is comparable with the paper (e.g. another
        simulator model); every verdict then reads ``not comparable`` with this reason.
    """

    title: str
    source: str
    compare: Mapping[str, Any]
    published: tuple[Published, ...] = ()
    notes: tuple[str, ...] = ()
    requires: str = ""
    incomparable: str = ""

    def config(self, name: str, scale: float = 1.0, only: str | None = None,
               options: Mapping[str, Any] | None = None) -> Config:
        """The comparison that runs this preset: at ``scale`` of its budget, narrowed to
        ``only`` (``ALGO[,ALGO]/SETTING[,SETTING]``), then ``options`` applied."""
        config = self.base_config(name).scaled(scale)
        if only:
            config = narrowed(config, only)
        return make_config(dict(options or {}), config)

    def base_config(self, name: str) -> Config:
        """The preset's comparison at full scale, as the paper ran it."""
        try:
            config = make_config({**self.compare, "preset": name})
        except MetabenchError as error:
            raise MetabenchError(f"preset '{name}': {error}") from None
        return config

    def published_for(self, algorithm: str, setting: str) -> Published | None:
        """The published result of ``algorithm`` in ``setting`` (``5w1s``), if any."""
        return next((p for p in self.published if p.algorithm == algorithm
                     and p.setting == setting and p.step is None), None)

    def published_curve(self, algorithm: str, setting: str) -> list[Published]:
        """The published points of ``algorithm``'s adaptation curve in ``setting``, by step."""
        return sorted((p for p in self.published if p.algorithm == algorithm
                       and p.setting == setting and p.step is not None),
                      key=lambda p: p.step or 0)

    def describe(self, name: str) -> dict[str, Any]:
        """A JSON-ready summary for ``metabench reproduce`` listings."""
        config = self.base_config(name)
        return {
            "name": name, "title": self.title, "source": self.source,
            "algorithms": list(config.algorithms),
            "datasets": [domains_label(d, config.test_dataset) for d in config.datasets],
            "settings": settings_of(config),
            "budget": config.budget_text(), "requires": self.requires, "notes": list(self.notes),
            "published": [dataclasses.asdict(p) for p in self.published],
            "compare": config.plan_fields(),
        }


def settings_of(config: Config) -> list[str]:
    """The setting labels a configuration runs (``5w1s``, ``10shot``)."""
    types = {t for d in config.datasets for t in registry.get("dataset", d).task_types}
    task_type = next(iter(types), CLASSIFICATION)
    ways = config.ways if task_type == CLASSIFICATION else config.ways[:1]
    return [setting_label(task_type, w, s) for w in ways for s in config.shots]


def get_preset(name: str) -> Preset:
    """The preset registered under ``name``, or an error listing the known ones."""
    preset = registry.get("preset", name).factory
    if not isinstance(preset, Preset):
        raise MetabenchError(f"preset '{name}' was registered with a {type(preset).__name__}; "
                             "expected a metabench.Preset")
    return preset


def all_presets() -> dict[str, Preset]:
    """Every registered preset by name."""
    return {name: get_preset(name) for name in registry.collect("preset")}


# --- narrowing a preset: --only ALGO/SETTING ---------------------------------------------------

_SETTING = re.compile(r"^(?:(\d+)w(\d+)s|(\d+)shot)$")


def narrowed(config: Config, only: str) -> Config:
    """``config`` with only some algorithms and settings: ``maml/5w1s``, ``maml,fomaml``,
    ``/20w5s`` or ``protonet/5w1s,20w1s`` (ways and shots cross, as in ``compare``)."""
    algorithms_text, _, settings_text = only.partition("/")
    changes: dict[str, Any] = {}
    algorithms = [a.strip() for a in algorithms_text.split(",") if a.strip()]
    for name in algorithms:
        if name not in config.algorithms:
            raise MetabenchError(f"--only {only}: algorithm '{name}' is not in this preset "
                                 f"(algorithms: {', '.join(config.algorithms)})")
    settings = [s.strip() for s in settings_text.split(",") if s.strip()]
    if settings:
        ways, shots = _setting_numbers(only, settings, config)
        changes.update(ways=ways, shots=shots)
    return restricted(dataclasses.replace(config, **changes), algorithms or config.algorithms)


def restricted(config: Config, algorithms: Sequence[str]) -> Config:
    """``config`` running only ``algorithms``, with only their hyperparameter tables."""
    kept = tuple(algorithms)
    hparams = {key: value for key, value in config.hparams.items()
               if key.partition("@")[0] in kept}
    return dataclasses.replace(config, algorithms=kept, hparams=hparams)


def _setting_numbers(only: str, settings: Sequence[str],
                     config: Config) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ways: list[int] = []
    shots: list[int] = []
    for text in settings:
        match = _SETTING.match(text)
        if not match:
            raise MetabenchError(f"--only {only}: '{text}' is not a setting; expected e.g. "
                                 "5w1s or 10shot")
        way, shot = (int(match[1]), int(match[2])) if match[1] else (config.ways[0], int(match[3]))
        if way not in config.ways or shot not in config.shots:
            raise MetabenchError(f"--only {only}: setting '{text}' is not in this preset "
                                 f"(ways {_join(config.ways)}, shots {_join(config.shots)})")
        ways.append(way)
        shots.append(shot)
    return tuple(dict.fromkeys(ways)), tuple(dict.fromkeys(shots))


def _join(values: Sequence[Any]) -> str:
    return ", ".join(map(str, values))


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

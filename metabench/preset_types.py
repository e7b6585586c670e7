"""A paper preset as data: its protocol (the options of a comparison) and its published
results. Low in the layers (typed values), so the registry can check what a plugin registered
as a preset; the preset listing, the verdicts and the lookups live above
(:mod:`metabench.presets`, :mod:`metabench.registry`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metabench.config import Config, make_config
from metabench.errors import MetabenchError
from metabench.metrics import Metric

# "unknown": the paper prints ± without saying what it is.
INTERVAL_KINDS = ("95% CI", "std", "standard error", "unknown", "")


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

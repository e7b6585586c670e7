"""Search spaces: the ranges ``metabench tune`` draws an algorithm's hyperparameters from.

An algorithm plugin declares its space beside its defaults
(``register(..., search_space={"inner_lr": LogUniform(0.01, 1.0)})``); a user narrows or
replaces an entry with ``--space ALGO.NAME=log:0.05:0.5`` (``[space.ALGO]`` in TOML) or drops
it with ``off``. Every entry is checked against the algorithm's hyperparameter dataclass
before a trial runs: the name must be a field, the range non-empty and the values of a type
the field takes.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metabench.errors import MetabenchError, closest_hint
from metabench.hparams import coerce

OFF = "off"  # --space ALGO.NAME=off: do not tune NAME


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from ``[low, high]``."""

    low: float
    high: float

    def describe(self) -> str:
        """The range as text, e.g. ``uniform 0.1..0.9``."""
        return f"uniform {self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class LogUniform:
    """A float whose logarithm is uniform on ``[log low, log high]`` (``0 < low < high``):
    learning rates."""

    low: float
    high: float

    def describe(self) -> str:
        """The range as text, e.g. ``log 0.01..1``."""
        return f"log {self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class IntUniform:
    """An integer drawn from ``low..high`` (both included); ``log`` spaces it log-uniformly."""

    low: int
    high: int
    log: bool = False

    def describe(self) -> str:
        """The range as text, e.g. ``int 1..10``."""
        return f"{'logint' if self.log else 'int'} {self.low}..{self.high}"


@dataclass(frozen=True, init=False)
class Choice:
    """One of a few values: ``Choice(4, 8, 16)``."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))

    def describe(self) -> str:
        """The values as text, e.g. ``choice 4,8``."""
        return "choice " + ",".join(map(str, self.values))


Distribution = Uniform | LogUniform | IntUniform | Choice
#: What ``register(..., search_space=...)`` takes: hyperparameter name -> distribution.
SearchSpace = Mapping[str, Distribution]
_RANGES = {"uniform": Uniform, "log": LogUniform, "int": IntUniform, "logint": IntUniform}
SYNTAX = "log:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH, logint:LOW:HIGH, choice:A,B,... or off"


def parse_distribution(where: str, text: Any) -> Distribution | None:
    """A distribution from its text form (``log:0.01:1``, ``choice:4,8``; None for ``off``),
    or a TOML list (a choice)."""
    if isinstance(text, list | tuple):
        return Choice(*text)
    if isinstance(text, Distribution):
        return text
    raw = str(text).strip()
    if raw.lower() == OFF:
        return None
    kind, _, rest = raw.partition(":")
    kind = kind.strip().lower()
    if kind == "choice":
        values = [_literal(part.strip()) for part in rest.split(",") if part.strip()]
        return Choice(*values)
    parts = rest.split(":")
    if kind not in _RANGES or len(parts) != 2:
        raise MetabenchError(f"{where}={raw!r} is not a search range; expected {SYNTAX}")
    number = int if kind in ("int", "logint") else float
    try:
        low, high = number(parts[0]), number(parts[1])
    except ValueError:
        raise MetabenchError(f"{where}={raw!r}: bounds must be {number.__name__}s; "
                             f"expected {SYNTAX}") from None
    if kind == "logint":
        return IntUniform(int(low), int(high), log=True)
    distribution: Distribution = _RANGES[kind](low, high)
    return distribution


def _literal(text: str) -> Any:
    """A choice's value: an int, a float, true/false, or the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def check_space(owner: str, space: Mapping[str, Any], defaults: Any) -> dict[str, Distribution]:
    """``space`` checked against ``owner``'s hyperparameters ``defaults`` (a dataclass):
    every name a field, every range non-empty, every value one the field's type takes."""
    if not isinstance(space, Mapping):
        raise MetabenchError(f"{owner}: search_space is a {type(space).__name__}; expected a "
                             "dict of hyperparameter name -> distribution")
    if space and (defaults is None or not dataclasses.is_dataclass(defaults)):
        raise MetabenchError(f"{owner} has no hyperparameters to tune ({', '.join(space)} given)")
    hints = typing.get_type_hints(type(defaults)) if space else {}
    checked: dict[str, Distribution] = {}
    for name, distribution in space.items():
        if name not in hints:
            known = sorted(hints)
            raise MetabenchError(f"{owner} has no hyperparameter '{name}' to tune"
                                 f"{closest_hint(name, known)} known: {', '.join(known)}")
        checked[name] = _check_distribution(f"{owner}.{name}", distribution, hints[name])
    return checked


def _check_distribution(where: str, distribution: Any, annotation: Any) -> Distribution:
    if not isinstance(distribution, Distribution):
        raise MetabenchError(f"{where}: {distribution!r} is not a distribution; expected "
                             "Uniform, LogUniform, IntUniform or Choice")
    kind = _field_kind(annotation)
    if isinstance(distribution, Choice):
        return _check_choice(where, distribution, annotation)
    low, high = distribution.low, distribution.high
    if not (_finite(low) and _finite(high)) or not low < high:
        raise MetabenchError(f"{where}: {distribution.describe()} is an empty or inverted "
                             "range; expected LOW < HIGH")
    if (isinstance(distribution, LogUniform) or getattr(distribution, "log", False)) and low <= 0:
        raise MetabenchError(f"{where}: {distribution.describe()} starts at {low:g}; a log "
                             "range needs LOW > 0")
    if isinstance(distribution, IntUniform):
        if kind not in (int, float) or kind is bool:
            raise _type_mismatch(where, distribution, kind)
        if int(low) != low or int(high) != high:
            raise MetabenchError(f"{where}: {distribution.describe()} needs integer bounds")
    elif kind is not float:
        raise _type_mismatch(where, distribution, kind)
    return distribution


def _check_choice(where: str, choice: Choice, annotation: Any) -> Choice:
    if not choice.values:
        raise MetabenchError(f"{where}: choice has no values; expected at least one")
    if len(set(map(repr, choice.values))) != len(choice.values):
        raise MetabenchError(f"{where}: {choice.describe()} repeats a value")
    values = []
    for value in choice.values:
        if value is None:
            raise MetabenchError(f"{where}: a choice may not hold None")
        values.append(coerce(where, value, annotation))
    return Choice(*values)


def _field_kind(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is not None and len(args) == 1 else annotation


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _type_mismatch(where: str, distribution: Distribution, kind: Any) -> MetabenchError:
    name = getattr(kind, "__name__", str(kind))
    wanted = {int: "int or logint (IntUniform)", bool: "choice:true,false",
              str: "choice (Choice)"}.get(kind, "choice (Choice)")
    return MetabenchError(f"{where} is a {name} field; {distribution.describe()} cannot give "
                          f"one; expected {wanted}")


def contains(distribution: Distribution, value: Any) -> bool:
    """Whether ``value`` is one the distribution can draw (defaults enqueued as trial 0)."""
    if value is None:
        return False
    if isinstance(distribution, Choice):
        return value in distribution.values
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return distribution.low <= value <= distribution.high


def to_optuna(distribution: Distribution) -> Any:
    """The Optuna distribution of one entry."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(distribution, Choice):
        return CategoricalDistribution(list(distribution.values))
    if isinstance(distribution, IntUniform):
        return IntDistribution(int(distribution.low), int(distribution.high), log=distribution.log)
    return FloatDistribution(float(distribution.low), float(distribution.high),
                             log=isinstance(distribution, LogUniform))


def describe_space(space: Mapping[str, Distribution]) -> str:
    """A space as one line: ``inner_lr log 0.01..1, meta_lr log 0.0001..0.01``."""
    return ", ".join(f"{name} {dist.describe()}" for name, dist in space.items()) or "(empty)"

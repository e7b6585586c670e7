"""The meta-training budget of a cell group (:class:`Budget`) and the per-setting budgets
of a comparison (``--setting-budget SETTING=BUDGET``, a ``budgets`` table)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metabench.errors import MetabenchError

BUDGET_KINDS = ("episodes", "steps", "time")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_TIME = re.compile(r"^(\d+(?:\.\d*)?)\s*([smh]?)$")


@dataclass(frozen=True)
class Budget:
    """The meta-training budget of every algorithm in a cell group.

    ``kind`` is ``episodes`` (training episodes, however they are batched), ``steps``
    (meta-training steps: a paper's meta-iterations, each of its meta-batch of episodes) or
    ``time`` (seconds of meta-training, validation excluded).
    """

    kind: str
    amount: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse ``episodes:20000``, ``steps:60000`` or ``time:5m`` (also ``30s``, ``1h``)."""
        kind, sep, value = str(text).strip().partition(":")
        if not sep or kind not in BUDGET_KINDS:
            raise _budget_error(text)
        if kind != "time":
            return cls(kind, float(_positive_int(text, value)))
        match = _TIME.match(value.strip())
        if not match or not 0 < float(match.group(1)) * _UNITS[match.group(2) or "s"] <= _MAX_TIME:
            raise _budget_error(text)
        return cls(kind, float(match.group(1)) * _UNITS[match.group(2) or "s"])

    @property
    def label(self) -> str:
        """The budget as text, e.g. ``episodes:20000``, ``steps:60000`` or ``time:40s``."""
        if self.kind != "time":
            return f"{self.kind}:{int(self.amount)}"
        return f"time:{self.amount:g}s"

    def scaled(self, factor: float) -> Budget:
        """This budget times ``factor`` (whole episodes or steps, at least one)."""
        amount = self.amount * factor
        if self.kind != "time":
            amount = float(max(1, round(amount)))
        return Budget(self.kind, amount)


_MAX_TIME = 366 * 24 * 3600.0  # a year of training
_MAX_AMOUNT = 10**12


def _positive_int(text: str, value: str) -> int:
    if not value.strip().isascii() or not value.strip().isdigit() or not 1 <= int(value) <= _MAX_AMOUNT:
        raise _budget_error(text)
    return int(value)


def _budget_error(text: str) -> MetabenchError:
    return MetabenchError(
        f"budget '{text}' is not valid; expected episodes:N, steps:N (1 <= N <= 10^12) or "
        "time:T with T like 30s, 5m or 1h (at most a year)"
    )


def parse_setting_budgets(value: Any, previous: Any) -> dict[str, Budget]:
    """``{setting: budget}`` from a table (it replaces ``previous``) or ``SETTING=BUDGET``
    strings (``--setting-budget``, added to ``previous``)."""
    merged = dict(previous or {}) if isinstance(value, str | list | tuple) else {}
    if isinstance(value, str | list | tuple):
        items = [value] if isinstance(value, str) else list(value)
        pairs = [(str(item).partition("=")[0].strip(), str(item).partition("=")[2].strip())
                 for item in items]
        if any(not setting or not budget for setting, budget in pairs):
            raise MetabenchError(f"setting budget {value!r} is not of the form SETTING=BUDGET "
                                 "(e.g. 20w=steps:200000)")
        value = dict(pairs)
    if not isinstance(value, Mapping):
        raise MetabenchError(f"budgets={value!r} is not a table of SETTING = BUDGET "
                             "(e.g. budgets = {20w = \"steps:200000\"})")
    for setting, budget in value.items():
        merged[str(setting)] = budget if isinstance(budget, Budget) else Budget.parse(str(budget))
    return merged


def check_setting_budgets(budget: Budget, budgets: Mapping[str, Budget]) -> None:
    """A Budget each (``make_config`` parses text), and each key a setting (20w, 5s, 20w5s)."""
    for value in (budget, *budgets.values()):
        if not isinstance(value, Budget):
            raise MetabenchError(f"budget {value!r} is not a Budget; make_config parses text")
    for qualifier in budgets:
        if not re.fullmatch(r"\d+w|\d+s|\d+w\d+s|\d+shot", qualifier):
            raise MetabenchError(f"budgets: {qualifier!r} is not a setting; expected e.g. 20w, 5s "
                                 "or 20w5s")

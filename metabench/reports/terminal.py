"""The leaderboard as a terminal table (rich), as ``metabench compare`` prints it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from metabench.metrics import metric_named
from metabench.reports.data import setting_of


def leaderboard_table(table: pd.DataFrame) -> Table:
    """The leaderboard as a rich table; names from plugins are shown as text, never markup."""
    view = Table(box=box.SIMPLE_HEAD)
    view.add_column("algorithm", no_wrap=True)
    view.add_column("setting", no_wrap=True)
    view.add_column("score", justify="right", no_wrap=True)
    for name in ("steps", "train s", "ms/ep", "MB"):
        view.add_column(name, justify="right", no_wrap=True)
    extra = [name for name in ("published", "curve", "hparams", "protocol")
             if name in table and table[name].fillna("").astype(str).str.len().any()]
    for name in extra:
        view.add_column(name)
    for row in table.to_dict("records"):
        cells = leaderboard_cells(row) + [str(row.get(name) or "") for name in extra]
        view.add_row(*[escape(text) for text in cells])
    return view


def leaderboard_cells(row: dict[Any, Any]) -> list[str]:
    """One leaderboard row as display text: algorithm, setting, score with mark, costs."""
    setting = setting_of(row)
    score = score_text(row) if row.get("mark") else f"{score_text(row)}  "  # marks align
    peaks = [number(row.get("peak_train_mb")), number(row.get("peak_eval_mb"))]
    peak = max((p for p in peaks if not math.isnan(p)), default=math.nan)
    return [
        str(row["algorithm"]), setting, score, _fmt(row.get("steps"), "{:.0f}"),
        _fmt(row.get("train_time_s"), "{:.1f}"), _fmt(row.get("adapt_ms"), "{:.2f}"),
        _fmt(peak, "{:.0f}"),
    ]


def score_text(row: Mapping[Any, Any]) -> str:
    """``62.20 ± 2.56 % *``: mean ± interval with its mark; with several seeds also the
    interval over per-seed means: ``62.20 ± 2.56 % (seeds ± 4.10) *``."""
    metric = metric_named(row["metric"])
    text = metric.format_score(row["mean"], row["ci"])
    seed_ci = number(row.get("seed_ci"))
    if not math.isnan(seed_ci):
        text += f" (seeds ± {metric.format_mean_ci(row['seed_mean'], seed_ci).split(' ± ')[-1]})"
    mark = row.get("mark") or ""
    return f"{text} {mark}" if mark else text


def number(value: Any) -> float:
    """``value`` as a float, NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: Any, pattern: str) -> str:
    value = number(value)
    return "-" if math.isnan(value) else pattern.format(value)

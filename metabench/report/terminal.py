"""The leaderboard as a terminal table (rich), as ``metabench compare`` prints it."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from metabench.metrics import metric_named
from metabench.protocol import setting_label


def leaderboard_table(table: pd.DataFrame) -> Table:
    """The leaderboard as a rich table; names from plugins are shown as text, never markup."""
    view = Table(box=box.SIMPLE_HEAD)
    view.add_column("algorithm", no_wrap=True)
    view.add_column("setting", no_wrap=True)
    view.add_column("score", justify="right", no_wrap=True)
    for name in ("steps", "train s", "ms/ep", "MB"):
        view.add_column(name, justify="right", no_wrap=True)
    for row in table.to_dict("records"):
        view.add_row(*[escape(text) for text in leaderboard_cells(row)])
    return view


def leaderboard_cells(row: dict[Any, Any]) -> list[str]:
    """One leaderboard row as display text: algorithm, setting, score with mark, costs."""
    metric = metric_named(row["metric"])
    setting = f"{row['dataset']} {setting_label(row['task_type'], row['ways'], row['shots'])}"
    score = f"{metric.format_score(row['mean'], row['ci'])} {row['mark'] or ' '}"
    peaks = [number(row.get("peak_train_mb")), number(row.get("peak_eval_mb"))]
    peak = max((p for p in peaks if not math.isnan(p)), default=math.nan)
    return [
        str(row["algorithm"]), setting, score, _fmt(row.get("steps"), "{:.0f}"),
        _fmt(row.get("train_time_s"), "{:.1f}"), _fmt(row.get("adapt_ms"), "{:.2f}"),
        _fmt(peak, "{:.0f}"),
    ]


def number(value: Any) -> float:
    """``value`` as a float, NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: Any, pattern: str) -> str:
    value = number(value)
    return "-" if math.isnan(value) else pattern.format(value)

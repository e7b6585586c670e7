"""Multi-source results (docs/multisource.md): the per-source table and the way/shot
histogram of any-way any-shot test episodes.

The per-source table has one row per algorithm and one column per test source of a
training setting (a data set, multi-source or not, with several test sources), its scores as
the leaderboard gives them and the average rank over those sources. Only the leaderboard's
rows go in: a multi-source cell is never pooled with a single-source one (their training
data sets differ, so they are different settings).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from metabench.metrics import metric_named
from metabench.reports.data import ReportData
from metabench.reports.figures import new_figure, plain
from metabench.sources import is_multi_source, source_names

TRAINING = ("dataset", "task_type", "ways", "shots", "queries")
RANK = "avg rank"


def per_source_tables(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(training setting, table)`` for each training setting tested on several sources:
    rows algorithms, columns the test sources (``(held out)`` where not trained on; mean and
    interval, in percent for accuracy), then the average rank over them."""
    if table.empty or "test_dataset" not in table:
        return []
    tables = []
    for _, rows in table.groupby(list(TRAINING), sort=False):
        if rows["test_dataset"].nunique() < 2 or rows["group"].nunique() != rows[
                "test_dataset"].nunique():
            continue  # one source, or a source under several protocols: nothing to line up
        first = rows.iloc[0]
        columns = {source: source_label(str(first["dataset"]), str(source))
                   for source in dict.fromkeys(rows["test_dataset"])}
        metric = metric_named(str(first["metric"]))
        rows = rows.assign(_score=[metric.format_mean_ci(m, c)
                                   for m, c in zip(rows["mean"], rows["ci"], strict=True)])
        wide = rows.pivot_table(index="algorithm", columns="test_dataset", values="_score",
                                aggfunc="first", sort=False)[list(columns)]
        wide.columns = list(columns.values())
        ranks = rows.groupby("algorithm", sort=False)["rank"].mean()
        wide[RANK] = ranks.reindex(wide.index).round(2)
        wide = wide.sort_values(RANK, kind="stable").reset_index()
        label = f"{first['dataset']} {str(first['setting']).rsplit(' ', 1)[-1]}"
        tables.append((label, wide))
    return tables


def source_label(dataset: str, source: str) -> str:
    """``omniglot``, or ``metaalbum (held out)`` for a source the cells did not train on."""
    trained = source_names(dataset) if is_multi_source(dataset) else [dataset]
    return source if source in trained else f"{source} (held out)"


def per_source_views(data: ReportData) -> list[dict[str, Any]]:
    """The per-source tables as plain strings for the HTML report."""
    views = []
    for label, wide in per_source_tables(data.table):
        columns = [str(c) for c in wide.columns]
        rows = [[_text(value) for value in row] for row in wide.itertuples(index=False)]
        views.append({"setting": label, "columns": columns, "rows": rows})
    return views


def per_source_text(table: pd.DataFrame) -> list[str]:
    """The per-source tables as plain text lines (for the terminal; nothing without one)."""
    lines = []
    for label, wide in per_source_tables(table):
        cells = [[str(c) for c in wide.columns],
                 *[[_text(v) for v in row] for row in wide.itertuples(index=False)]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        lines.append(f"per source: {label}")
        for row in cells:
            lines.append("  " + "   ".join(
                value.ljust(width) if i == 0 else value.rjust(width)
                for i, (value, width) in enumerate(zip(row, widths, strict=True))))
    return lines


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.2f}"
    return str(value)


def episode_shapes(cells: pd.DataFrame) -> dict[str, tuple[list[int], list[int]]]:
    """Test source -> (ways, support sizes) of its test episodes, from the cells that
    recorded them (any-way any-shot cells; every algorithm saw the same episodes)."""
    if cells.empty or "profile.test_ways" not in cells:
        return {}
    shapes: dict[str, tuple[list[int], list[int]]] = {}
    for row in cells.to_dict("records"):
        ways, support = row.get("profile.test_ways"), row.get("profile.test_support")
        if isinstance(ways, list) and isinstance(support, list):
            source = str(row.get("test_dataset") or row["dataset"])
            shapes.setdefault(source, ([int(w) for w in ways], [int(s) for s in support]))
    return shapes


def episodes_figure(data: ReportData) -> Figure | None:
    """Histograms of the ways and the support-set sizes of the test episodes, per source."""
    shapes = episode_shapes(data.cells)
    if not shapes:
        return None
    figure = new_figure(10.0, 3.2)
    ways_axes, support_axes = figure.subplots(1, 2)
    for source, (ways, support) in shapes.items():
        label = plain(f"{source} ({len(ways)} episodes)")
        ways_axes.hist(ways, bins=np.arange(min(ways), max(ways) + 2) - 0.5, alpha=0.55,
                       label=label)
        support_axes.hist(support, bins=20, alpha=0.55, label=label)
    ways_axes.set_xlabel("ways (classes per episode)")
    support_axes.set_xlabel("support-set size (images)")
    for axes in (ways_axes, support_axes):
        axes.set_ylabel("test episodes")
    ways_axes.legend(fontsize="small")
    figure.suptitle("Any-way any-shot test episodes")
    return figure

"""The built-in plot kinds: scores, score against training time (Pareto front), learning
curves, costs, and the critical-difference diagram of average ranks.

Each is a ``figure(data) -> Figure | None`` that :mod:`metabench.reports.plots` registers
through ``register_plots``, as a plugin would, and reads only the public
:class:`~metabench.reports.data.ReportData`. Facets are the leaderboard's protocol groups
(one per setting unless a setting was run under different protocols). Each algorithm keeps
its colour from ``data.colors``. Names from plugins and configs are drawn as plain text:
never mathtext, never TeX (``$x$`` shows as ``$x$``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from metabench.reports.data import ReportData
from metabench.reports.figures import (
    FACET_COLUMNS,
    GREY,
    PLAIN,
    WIDE,
    Facet,
    add_legend,
    algorithm_order,
    algorithm_patches,
    color_of,
    dim_note,
    facet_axes,
    facets,
    interval,
    is_best,
    new_figure,
    number,
    plain,
    scaled,
    score_label,
    whisker,
)

# --- scores -------------------------------------------------------------------------------------


def scores_figure(data: ReportData) -> Figure | None:
    """Test score with its interval per algorithm, one panel per setting; the best marked."""
    panels = facets(data)
    if not panels:
        return None
    names = algorithm_order(data)
    columns = min(len(panels), FACET_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    longest = max(len(name) for name in names)
    figure = new_figure(max(6.0, 4.3 * columns + 0.08 * longest), rows * (1.3 + 0.34 * len(names)) + 1.2)
    axes = facet_axes(figure, len(panels), sharey=True)
    for ax, facet in zip(axes, panels, strict=True):
        _scores_panel(ax, facet, names, data)
    ax = axes[0]
    ax.set_yticks(range(len(names)), labels=[plain(name) for name in names])
    ax.set_ylim(len(names) - 0.5, -0.5)
    figure.suptitle("Test score per algorithm and setting")
    add_legend(figure, algorithm_patches(data, [n for n in names if _in_any(n, panels)]),
               title=f"bar: mean · whisker: {100 * data.confidence:g}% interval (over seeds when "
                     "several) · ★ best · * significantly worse than the best · = not "
                     "significantly different")
    return figure


def _in_any(name: str, panels: Sequence[Facet]) -> bool:
    return any(facet.row(name) is not None for facet in panels)


def _scores_panel(ax: Axes, facet: Facet, names: Sequence[str], data: ReportData) -> None:
    metric = facet.metric
    highs, lows = [0.0], [0.0]
    labels = []
    for position, name in enumerate(names):
        row = facet.row(name)
        if row is None:
            labels.append((position, "no result", False, 0.0))
            continue
        mean, half = number(row["mean"]), interval(row)
        best = is_best(row, facet)
        lower, upper = whisker(metric, mean, half)
        ax.barh(position, scaled(metric, mean), xerr=[[lower], [upper]], height=0.7,
                color=color_of(data, name), label=name, edgecolor="black" if best else "none",
                linewidth=1.5 if best else 0.0,
                error_kw={"ecolor": "#333333", "capsize": 3, "elinewidth": 1})
        high = scaled(metric, mean) + upper if math.isfinite(mean) else 0.0
        highs.append(high)
        lows.append(scaled(metric, mean) - lower if math.isfinite(mean) else 0.0)
        mark = str(row.get("mark") or "")
        text = metric.format_mean_ci(mean, half) + (f" {mark}" if mark else "")
        # Labels start right of the bar's end, or right of zero for a negative bar (returns).
        labels.append((position, ("★ " if best else "") + text, best, max(high, 0.0)))
    low = min(lows)
    span = (max(highs) - low) or 1.0
    right = max(highs) if max(highs) > 0 else (1.0 if low == 0 else 0.0)
    limit = right
    for position, text, best, end in labels:
        start = end + 0.02 * span
        ax.text(start, position, text, va="center", fontsize=8,
                fontweight="bold" if best else "normal", color="black" if end or low else GREY,
                **PLAIN)
        # The text takes about 0.075 inch a character of a panel about 3.6 inches wide.
        share = min(0.6, 0.075 * (len(text) + 1) / 3.6)
        limit = max(limit, low + (start - low) / (1.0 - share))
    ax.set_xlim(low - (0.02 * span if low < 0 else 0.0), limit)
    if metric.percent:
        ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel(score_label(metric))
    ax.set_title(facet.title, fontsize=9, **PLAIN)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


# --- Pareto: score against training time ------------------------------------------------------------


def pareto_front(times: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both (lower time, higher score),
    by increasing time."""
    order = sorted(range(len(times)), key=lambda i: (times[i], -scores[i]))
    front: list[int] = []
    for i in order:
        if not front or scores[i] > scores[front[-1]]:
            front.append(i)
    return front


def pareto_figure(data: ReportData) -> Figure | None:
    """Score against meta-training time, one point per algorithm; the Pareto front of
    faster and better drawn per setting. None without recorded training times."""
    table = data.table
    if "train_time_s" not in table or not (pd.to_numeric(table["train_time_s"]) > 0).any():
        return None
    panels = facets(data)
    names = algorithm_order(data)
    columns = min(len(panels), FACET_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(max(6.0, 4.6 * columns), 3.9 * rows + 1.0)
    for ax, facet in zip(facet_axes(figure, len(panels)), panels, strict=True):
        _pareto_panel(ax, facet, names, data)
    figure.suptitle("Test score against meta-training time")
    handles: list[Any] = [Line2D([], [], ls="none", marker="o", markersize=8, color=color_of(data, n),
                                 label=n) for n in names if _in_any(n, panels)]
    handles.append(Line2D([], [], ls="none", marker="o", markersize=9, markerfacecolor="white",
                          markeredgecolor="black", markeredgewidth=1.5, label="on the Pareto front"))
    handles.append(Line2D([], [], color="black", ls="--", lw=1, label="Pareto front"))
    add_legend(figure, handles, title=f"Pareto front: no other algorithm is both faster and better "
                                      f"· whiskers: {100 * data.confidence:g}% interval")
    return figure


def _pareto_panel(ax: Axes, facet: Facet, names: Sequence[str], data: ReportData) -> None:
    metric = facet.metric
    points = []
    missing = []
    for name in names:
        row = facet.row(name)
        if row is None:
            continue
        seconds, mean = number(row.get("train_time_s")), number(row["mean"])
        if not (seconds > 0 and math.isfinite(mean)):
            missing.append(name)
            continue
        points.append((name, seconds, mean, interval(row)))
    if not points:
        dim_note(ax, "no training time recorded")
    times = [p[1] for p in points]
    front = pareto_front(times, [metric.score(p[2]) for p in points])
    for i, (name, seconds, mean, half) in enumerate(points):
        color = color_of(data, name)
        on_front = i in front
        lower, upper = whisker(metric, mean, half)
        ax.errorbar([seconds], [scaled(metric, mean)], yerr=[[lower], [upper]], fmt="none",
                    ecolor=color, elinewidth=1, capsize=2, alpha=0.7, label="_nolegend_")
        ax.scatter([seconds], [scaled(metric, mean)], s=80 if on_front else 50, color=color,
                   edgecolors="black" if on_front else "white", linewidths=1.5 if on_front else 0.5,
                   zorder=3, label=name)
        if len(points) <= 8:
            ax.annotate(name, (seconds, scaled(metric, mean)), xytext=(6, 4),
                        textcoords="offset points", fontsize=8, **PLAIN)
    if len(front) > 1:
        ax.plot([times[i] for i in front], [scaled(metric, points[i][2]) for i in front],
                drawstyle="steps-post", color="black", ls="--", lw=1, zorder=2, label="Pareto front")
    wide = bool(times) and max(times) / min(times) > WIDE
    if wide:
        ax.set_xscale("log")
    ax.margins(x=0.25, y=0.2)
    ax.set_xlabel("meta-training time (s, log scale)" if wide else "meta-training time (s)")
    ax.set_ylabel(score_label(metric))
    title = facet.title + (f"\nno training time: {', '.join(missing)}" if missing else "")
    ax.set_title(title, fontsize=9, **PLAIN)
    ax.grid(alpha=0.3)


# --- learning curves ----------------------------------------------------------------------------


def curve_points(data: ReportData) -> pd.DataFrame:
    """The validation points of every finished cell, averaged over seeds: one row per protocol
    group, algorithm and validation point (columns group, algorithm, point, episodes, seconds,
    value, seeds)."""
    cells = _cells_with_groups(data)
    metrics = {facet.group: facet.metric.name for facet in facets(data)}
    records = []
    for cell in cells.to_dict("records"):
        key = f"val_{metrics.get(cell['group'], '')}"
        curve = cell.get("curve")
        for point, entry in enumerate(curve if isinstance(curve, list) else []):
            value = number(entry.get(key)) if isinstance(entry, dict) else math.nan
            if not math.isfinite(value):
                continue
            episodes = number(entry.get("episodes", entry.get("step")))
            records.append({"group": cell["group"], "algorithm": cell["label"], "point": point,
                            "episodes": episodes, "seconds": number(entry.get("seconds")),
                            "value": value})
    columns = ["group", "algorithm", "point", "episodes", "seconds", "value", "seeds"]
    if not records:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame.from_records(records)
    averaged = frame.groupby(["group", "algorithm", "point"], sort=False).agg(
        episodes=("episodes", "mean"), seconds=("seconds", "mean"), value=("value", "mean"),
        seeds=("value", "size")).reset_index()
    return averaged[columns]


def _cells_with_groups(data: ReportData) -> pd.DataFrame:
    """The finished cells of the leaderboard with their protocol group and algorithm label
    (the cell's test episodes name both)."""
    cells, episodes = data.cells, data.episodes
    empty = pd.DataFrame(columns=["group", "label", "curve"])
    if cells.empty or "curve" not in cells:
        return empty
    if "status" in cells:
        cells = cells[cells["status"] == "ok"]
    if {"run", "cell", "group", "algorithm"} <= set(episodes) and {"run", "key"} <= set(cells):
        labels = (episodes[["run", "cell", "group", "algorithm"]].drop_duplicates(["run", "cell"])
                  .rename(columns={"cell": "key", "algorithm": "label"}))
        return cells.merge(labels, on=["run", "key"])
    keys = ["run", "dataset", "ways", "shots", "queries"]
    if set(keys) <= set(cells) and {*keys, "group"} <= set(data.table):
        merged = cells.merge(data.table[[*keys, "group"]].drop_duplicates(), on=keys)
        return merged.assign(label=merged["algorithm"])
    return empty


def curves_figure(data: ReportData) -> Figure | None:
    """Validation score during meta-training, against training episodes and against seconds,
    one row per setting, one line per algorithm (mean over seeds). None without curves."""
    points = curve_points(data)
    if points.empty:
        return None
    panels = [facet for facet in facets(data) if facet.group in set(points["group"])]
    names = [name for name in algorithm_order(data) if name in set(points["algorithm"])]
    figure = new_figure(10.0, 3.0 * len(panels) + 1.0)
    grid = figure.subplots(len(panels), 2, squeeze=False, sharey="row")
    for (by_episodes, by_seconds), facet in zip(grid, panels, strict=True):
        lines = points[points["group"] == facet.group]
        for name in names:
            line = lines[lines["algorithm"] == name]
            if line.empty:
                continue
            values = [scaled(facet.metric, v) for v in line["value"]]
            style = {"color": color_of(data, name), "marker": "o", "markersize": 3, "lw": 1.5,
                     "label": name}
            by_episodes.plot(line["episodes"].to_numpy(), values, **style)
            by_seconds.plot(line["seconds"].to_numpy(), values, **style)
        by_episodes.set_title(facet.title, fontsize=9, loc="left", **PLAIN)
        by_seconds.set_title("the same, against time", fontsize=9, loc="left")
        by_episodes.set_xlabel("meta-training episodes")
        by_seconds.set_xlabel("meta-training time (s)")
        by_episodes.set_ylabel(score_label(facet.metric, "validation"))
        for ax in (by_episodes, by_seconds):
            ax.set_xlim(left=0)
            ax.grid(alpha=0.3)
    seeds = int(points["seeds"].max())
    figure.suptitle("Learning curves: validation score during meta-training")
    add_legend(figure, [Line2D([], [], color=color_of(data, n), marker="o", markersize=4, label=n)
                        for n in names],
               title="mean over seeds at each validation point" if seeds > 1 else None)
    return figure


# --- adaptation curves (rl, curve_steps) ---------------------------------------------------------


def adaptation_figure(data: ReportData) -> Figure | None:
    """Test score after 0, 1, ... adaptation steps (rl runs with ``curve_steps``), one panel
    per setting, one line per algorithm with its interval. None without curves."""
    table = data.table
    if table.empty or "curve_mean" not in table:
        return None
    rows = table[[isinstance(m, list) and len(m) > 1 for m in table["curve_mean"]]]
    panels = [facet for facet in facets(data) if facet.group in set(rows["group"])]
    if not panels:
        return None
    figure = new_figure(max(6.0, 4.3 * min(len(panels), FACET_COLUMNS)),
                        3.4 * math.ceil(len(panels) / FACET_COLUMNS) + 1.0)
    axes = facet_axes(figure, len(panels), sharey=False)
    for ax, facet in zip(axes, panels, strict=True):
        for row in rows[rows["group"] == facet.group].to_dict("records"):
            steps = np.arange(len(row["curve_mean"]))
            means = np.array([scaled(facet.metric, v) for v in row["curve_mean"]])
            half = np.array([scaled(facet.metric, v) for v in row["curve_ci"]])
            color = color_of(data, str(row["algorithm"]))
            ax.plot(steps, means, color=color, marker="o", lw=1.5, label=plain(str(row["algorithm"])))
            ax.fill_between(steps, means - half, means + half, color=color, alpha=0.15, lw=0)
        ax.set_title(facet.title, fontsize=9, loc="left", **PLAIN)
        ax.set_xlabel("adaptation steps at test")
        ax.set_xticks(range(max(len(m) for m in rows["curve_mean"])))
        ax.set_ylabel(score_label(facet.metric, "test"))
        ax.grid(alpha=0.3)
    figure.suptitle("Adaptation curves: test score after each adaptation step")
    names = [n for n in algorithm_order(data) if n in set(rows["algorithm"])]
    add_legend(figure, [Line2D([], [], color=color_of(data, n), marker="o", label=n) for n in names],
               title=f"mean over test tasks · band: {100 * data.confidence:g}% interval")
    return figure


# --- costs --------------------------------------------------------------------------------------

COSTS = (("peak_mb", "Peak memory (training or test)", "peak memory (MB)"),
         ("adapt_ms", "Adaptation time per test episode (median)", "time per episode (ms)"))


def costs_figure(data: ReportData) -> Figure | None:
    """Peak memory and adaptation time per test episode, a bar per algorithm, grouped by
    setting. None when neither was recorded."""
    table = data.table
    present = [c for c, _, _ in COSTS if c in table and pd.to_numeric(table[c]).notna().any()]
    panels = facets(data)
    if not panels or not present:
        return None
    names = [n for n in algorithm_order(data) if _in_any(n, panels)]
    slots = len(panels) * len(names)
    side_by_side = slots <= 12
    width = max(8.0, 0.45 * slots + 2.0) if side_by_side else max(7.0, 0.3 * slots + 2.0)
    figure = new_figure(width, 4.2 if side_by_side else 7.5)
    grid = figure.subplots(1, 2, squeeze=False) if side_by_side else figure.subplots(2, 1, squeeze=False)
    labels = _short_labels(panels)
    for ax, (column, title, unit) in zip(grid.flat, COSTS, strict=True):
        _costs_panel(ax, column, panels, names, data, slots <= 12)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_xticks(range(len(panels)), labels=[plain(label) for label in labels], fontsize=8)
    figure.suptitle("Costs per algorithm and setting")
    add_legend(figure, algorithm_patches(data, names))
    return figure


def _short_number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _short_labels(panels: Sequence[Facet]) -> list[str]:
    settings = [facet.setting for facet in panels]
    return [facet.setting if settings.count(facet.setting) == 1
            else facet.setting + "\n" + textwrap.fill(facet.details, 26) for facet in panels]


def _costs_panel(ax: Axes, column: str, panels: Sequence[Facet], names: Sequence[str],
                 data: ReportData, label_bars: bool) -> None:
    """Per setting, a bar for each algorithm with a value, side by side around its tick."""
    width = 0.8 / max(len(names), 1)
    placed: dict[str, tuple[list[float], list[float]]] = {}
    for i, facet in enumerate(panels):
        present = []
        for name in names:
            row = facet.row(name)
            value = number(row.get(column)) if row is not None else math.nan
            if math.isfinite(value):
                present.append((name, value))
        for j, (name, value) in enumerate(present):
            xs, heights = placed.setdefault(name, ([], []))
            xs.append(i + (j - (len(present) - 1) / 2) * width)
            heights.append(value)
    if not placed:
        dim_note(ax, "not recorded")
        return
    for name in names:
        if name in placed:
            xs, heights = placed[name]
            bars = ax.bar(xs, heights, width * 0.92, color=color_of(data, name), label=name)
            if label_bars:
                ax.bar_label(bars, fmt=_short_number, fontsize=7, padding=2)
    positive = [v for _, heights in placed.values() for v in heights if v > 0]
    if positive and max(positive) / min(positive) > WIDE:
        ax.set_yscale("log")
    else:
        ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


# --- critical-difference diagram ----------------------------------------------------------------


def cliques(ranks: Sequence[float], critical_difference: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last index) of sorted average ranks that lie within the critical
    difference of each other: algorithms not significantly different (Demšar 2006)."""
    runs: list[tuple[int, int]] = []
    for first in range(len(ranks)):
        last = first
        while last + 1 < len(ranks) and ranks[last + 1] - ranks[first] <= critical_difference:
            last += 1
        if last > first and not any(a <= first and last <= b for a, b in runs):
            runs.append((first, last))
    return runs


def cd_figure(data: ReportData) -> Figure | None:
    """Critical-difference diagram: average ranks across settings, Nemenyi's critical
    difference, and bars joining algorithms not significantly different. None for fewer than
    two settings (no ranks)."""
    summary = data.ranks
    if summary is None or len(summary.ranks) < 2:
        return None
    names = [str(name) for name in summary.ranks.index]
    ranks = [float(rank) for rank in summary.ranks]
    cd = float(summary.critical_difference)
    low, high = 1.0, float(max(len(ranks), math.ceil(1.0 + cd)))
    groups = cliques(ranks, cd)
    half = math.ceil(len(names) / 2)
    # Lay out in inches: the rank axis in the middle, names on both sides.
    name_inches = 0.35 + 0.075 * max(len(f"{name} (0.00)") for name in names)
    axis_inches = max(4.5, 0.8 * (high - low))
    per_rank = (high - low) / axis_inches
    step = 0.3
    below = 0.35 + 0.12 * len(groups) + step * (max(half, len(names) - half) - 1) + 0.3
    above = 1.75
    figure = Figure(figsize=(axis_inches + 2 * name_inches, above + below))
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(low - name_inches * per_rank, high + name_inches * per_rank)
    ax.set_ylim(-below, above)
    # The rank axis, ticks and numbers.
    ax.plot([low, high], [0, 0], color="black", lw=1)
    for tick in np.arange(low, high + 0.01, 0.5):
        whole = float(tick).is_integer()
        ax.plot([tick, tick], [0, 0.1 if whole else 0.05], color="black", lw=1)
        if whole:
            ax.text(tick, 0.15, f"{tick:g}", ha="center", va="bottom", fontsize=9)
    ax.text((low + high) / 2, 0.42, "average rank (1 = best)", ha="center", va="bottom", fontsize=9)
    # The critical difference.
    ax.plot([low, low + cd], [0.85, 0.85], color="black", lw=1.5)
    for end in (low, low + cd):
        ax.plot([end, end], [0.78, 0.92], color="black", lw=1.5)
    ax.text(low + cd / 2, 0.95, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    verdict = "" if summary.p_value < summary.alpha else ": no difference is significant"
    ax.text((ax.get_xlim()[0] + ax.get_xlim()[1]) / 2, above - 0.08,
            f"Average ranks over {summary.settings} settings (critical-difference diagram, Demšar 2006)",
            ha="center", va="top", fontsize=10)
    ax.text((ax.get_xlim()[0] + ax.get_xlim()[1]) / 2, above - 0.33,
            f"Friedman p = {summary.p_value:.3g}{verdict} · CD: Nemenyi, α = {summary.alpha:g} · "
            "thick bars join algorithms not significantly different",
            ha="center", va="top", fontsize=8, color="#333333")
    # Groups not significantly different: thick bars under the axis.
    for k, (first, last) in enumerate(groups):
        y = -0.22 - 0.12 * k
        ax.plot([ranks[first] - 0.03, ranks[last] + 0.03], [y, y], color="black", lw=4,
                solid_capstyle="round")
    top = -0.35 - 0.12 * len(groups)
    for i, (name, rank) in enumerate(zip(names, ranks, strict=True)):
        left = i < half
        y = top - step * (i if left else len(names) - 1 - i)
        end = low - 0.15 * per_rank if left else high + 0.15 * per_rank
        color = color_of(data, name)
        ax.plot([rank, rank, end], [0, y, y], color=color, lw=1.5, label=name)
        ax.plot([rank], [0], marker="o", color=color, markersize=6, label="_nolegend_")
        ax.text(end - 0.05 * per_rank if left else end + 0.05 * per_rank, y, f"{name} ({rank:.2f})",
                ha="right" if left else "left", va="center", fontsize=9, **PLAIN)
    return figure

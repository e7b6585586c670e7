"""What the built-in plot kinds share: facets (one per protocol group), algorithm colours and
order, intervals and score labels, figures, legends, and plain text for names from data."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Patch

if TYPE_CHECKING:
    import pandas as pd

from metabench.metrics import Metric, metric_named
from metabench.reports.data import ReportData
from metabench.reports.terminal import number

# Text properties for strings that come from data: shown as written.
PLAIN: dict[str, Any] = {"parse_math": False, "usetex": False}
GREY = "#7f7f7f"
FACET_COLUMNS = 3
WIDE = 20.0  # a max/min ratio above which an axis of times goes logarithmic


@dataclass(frozen=True)
class Facet:
    """One protocol group of the leaderboard: its rows (one per algorithm) and its labels."""

    group: str
    setting: str
    details: str
    metric: Metric
    rows: pd.DataFrame
    failed: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The setting, the protocol on a second line, and the algorithms that failed in it."""
        lines = [self.setting]
        if self.details:
            lines.append(textwrap.shorten(self.details, 60, placeholder="…"))
        if self.failed:
            lines.append(textwrap.shorten("failed: " + ", ".join(self.failed), 60, placeholder="…"))
        return "\n".join(lines)

    def row(self, algorithm: str) -> dict[str, Any] | None:
        """The algorithm's leaderboard row in this group, or None."""
        match = self.rows[self.rows["algorithm"] == algorithm]
        return None if match.empty else dict(match.iloc[0])


def facets(data: ReportData) -> list[Facet]:
    """The protocol groups of the leaderboard, in its order."""
    table = data.table
    if table.empty or "algorithm" not in table or "mean" not in table:
        return []
    key = "group" if "group" in table else "setting"
    failed = failed_algorithms(data)
    result = []
    for group, rows in table.groupby(key, sort=False):
        first = rows.iloc[0]
        setting = str(first["setting"]) if "setting" in rows else str(group)
        group = str(group)
        details = group[len(setting):].strip(" ·") if group.startswith(setting) else group
        metric = metric_named(str(first["metric"]) if "metric" in rows else "accuracy")
        result.append(Facet(group, setting, details, metric, rows.reset_index(drop=True),
                            failed.get(group, ())))
    return result


def failed_algorithms(data: ReportData) -> dict[str, tuple[str, ...]]:
    """Per protocol group, the algorithms with a failed cell in it (of the runs shown)."""
    keys = ["run", "dataset", "ways", "shots", "queries"]
    cells, table = data.cells, data.table
    if cells.empty or not {*keys, "algorithm", "status"} <= set(cells) or not {*keys, "group"} <= set(table):
        return {}
    failed = cells.loc[cells["status"] == "failed", [*keys, "algorithm"]]
    groups = table[[*keys, "group"]].drop_duplicates()
    merged = failed.merge(groups, on=keys)
    return {str(group): tuple(dict.fromkeys(map(str, frame["algorithm"])))
            for group, frame in merged.groupby("group", sort=False)}


def algorithm_order(data: ReportData) -> list[str]:
    """Every algorithm of the leaderboard, in colour order (the same in every plot)."""
    names = list(data.colors)
    if "algorithm" in data.table:
        names += [str(name) for name in data.table["algorithm"] if name not in data.colors]
    return list(dict.fromkeys(names))


def color_of(data: ReportData, name: str) -> str:
    """The algorithm's colour (grey for a name without one)."""
    return data.colors.get(name, GREY)


def plain(text: object) -> str:
    """A string for a tick label drawn as written (tick labels cannot turn mathtext off)."""
    return str(text).replace("$", r"\$")


def scaled(metric: Metric, value: float) -> float:
    """A metric value as drawn: percent for accuracy."""
    return 100.0 * value if metric.percent else value


def score_label(metric: Metric, what: str = "test") -> str:
    """An axis label with the unit and, when lower is better, the direction."""
    if metric.percent:
        return f"{what} {metric.name} (%)"
    direction = "higher" if metric.higher_is_better else "lower"
    return f"{what} {metric.name} ({direction} is better)"


def whisker(metric: Metric, mean: float, half: float) -> tuple[float, float]:
    """The drawn lengths below and above the mean of an interval, clipped to the metric's
    range (accuracy 0 to 100%, errors and losses from 0)."""
    low, high = mean - half, mean + half
    if mean >= 0:
        low = max(low, 0.0)
    if metric.percent and mean <= 1:
        high = min(high, 1.0)
    return scaled(metric, mean - low), scaled(metric, high - mean)


def interval(row: dict[str, Any]) -> float:
    """The half-width of a row's interval: over seeds when there are several, else episodes."""
    for column in ("seed_ci", "ci"):
        value = number(row.get(column))
        if math.isfinite(value):
            return value
    return 0.0


def is_best(row: dict[str, Any], facet: Facet) -> bool:
    """The leaderboard's best of its group (mark '' ), or rank 1 where marks are absent."""
    if "mark" in facet.rows:
        return str(row.get("mark") or "") == ""
    if "rank" in facet.rows:
        return number(row.get("rank")) == float(facet.rows["rank"].min())
    return False


def new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout, never pyplot's."""
    return Figure(figsize=(width, height), layout="constrained")


def facet_axes(figure: Figure, count: int, **options: Any) -> list[Axes]:
    """``count`` axes in rows of up to three; the unused cells of the grid are removed."""
    columns = min(count, FACET_COLUMNS)
    rows = math.ceil(count / columns)
    grid = figure.subplots(rows, columns, squeeze=False, **options)
    axes: list[Axes] = list(grid.flat)
    for extra in axes[count:]:
        figure.delaxes(extra)
    return axes[:count]


def add_legend(figure: Figure, handles: Sequence[Any], title: str | None = None) -> Legend:
    """One legend under the whole figure; its texts drawn as written."""
    if title:
        title = textwrap.fill(title, max(40, int(15 * figure.get_figwidth())))
    legend = figure.legend(handles=list(handles), loc="outside lower center",
                           ncols=min(len(handles), 5), frameon=False, title=title,
                           title_fontsize=8, fontsize=9)
    for text in legend.get_texts():
        text.set_parse_math(False)
        text.set_usetex(False)
    return legend


def algorithm_patches(data: ReportData, names: Sequence[str]) -> list[Patch]:
    return [Patch(facecolor=color_of(data, name), label=name) for name in names]


def dim_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=GREY,
            fontsize=9, **PLAIN)



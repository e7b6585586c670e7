"""The leaderboard of a comparison: scores with intervals, ranks, significance marks, costs."""

from __future__ import annotations

import pandas as pd

from metabench.metrics import metric_for, metric_named
from metabench.stats import RankSummary, rank_summary, summary_table

GROUP_COLS = ("dataset", "ways", "shots", "queries")

# Leaderboard column: (cells-frame column, how cells of one setting combine).
_COSTS = {
    "train_time_s": ("profile.train_time_s", "mean"),
    "steps": ("steps", "mean"),
    "train_episodes": ("train_episodes", "mean"),
    "adapt_ms": ("profile.adapt_median_s", "mean"),
    "peak_train_mb": ("profile.peak_memory_train_mb", "max"),
    "peak_eval_mb": ("profile.peak_memory_eval_mb", "max"),
}


def leaderboard(episodes: pd.DataFrame, cells: pd.DataFrame, confidence: float = 0.95,
                margin: float = 0.0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per setting x algorithm: metric mean and CI, significance mark vs the best,
    meta-training time, steps, adaptation time per episode and peak memory."""
    parts = []
    for task_type, frame in episodes.groupby("task_type", sort=False):
        metric = metric_for(str(task_type))
        table = summary_table(frame, metric=metric.name, group_cols=GROUP_COLS,
                              confidence=confidence, alpha=alpha, margin=margin,
                              higher_is_better=metric.higher_is_better)
        table.insert(0, "metric", metric.name)
        table.insert(1, "task_type", task_type)
        parts.append(table)
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return table.merge(cell_costs(cells), how="left", on=["algorithm", *GROUP_COLS])


def ranks_across_settings(table: pd.DataFrame, alpha: float = 0.05) -> RankSummary | None:
    """Average ranks over a leaderboard's settings, Friedman's test and Nemenyi's CD.

    Each metric is signed by its direction (accuracy higher, MSE lower is better), so
    classification and regression settings can be ranked together. Settings where an
    algorithm has no result are left out; None when fewer than 2 settings or 2 algorithms
    remain.
    """
    if table.empty:
        return None
    score = [metric_named(name).score(mean) for name, mean in zip(table["metric"], table["mean"],
                                                                   strict=True)]
    wide = table.assign(score=score).pivot(
        index=["metric", *GROUP_COLS], columns="algorithm", values="score"
    ).dropna(how="any")
    if wide.shape[0] < 2 or wide.shape[1] < 2:
        return None
    return rank_summary(wide, alpha=alpha)


def cell_costs(cells: pd.DataFrame) -> pd.DataFrame:
    """Budget use and profile of the ok cells, one row per algorithm x setting."""
    ok = cells[cells["status"] == "ok"]
    present = {k: v for k, v in _COSTS.items() if v[0] in ok}
    costs = ok.groupby(["algorithm", *GROUP_COLS], as_index=False).agg(**present)
    if "adapt_ms" in costs:
        costs["adapt_ms"] = costs["adapt_ms"] * 1000.0
    return costs


def legend(confidence: float, margin: float, alpha: float) -> str:
    """What the marks and columns of the leaderboard mean, with the statistics in force."""
    return (
        f"± {100 * confidence:g}% t-interval; * significantly worse than the best, = not "
        f"significantly different (paired t and Wilcoxon, Holm, α {alpha:g}, margin {margin:g}); "
        "train s: meta-training time; ms/ep: adaptation time per test episode (median); "
        "MB: peak memory"
    )

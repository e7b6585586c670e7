"""The leaderboard: scores with intervals, ranks and significance marks per protocol group,
with each algorithm's budget use and costs.

One seed: the interval is over test episodes and the marks come from paired t and Wilcoxon
tests on the shared (seed, episode) pairs, Holm-corrected (as ``compare`` always did). Two
or more seeds: test episodes of one trained model are not independent of its seed, so the
table adds the interval over per-seed means (``seed_ci``) and the marks come from a paired
t-test on per-seed means (same seed: same test episodes, same initial weights).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metabench.config import DEFAULT_THREADS, make_config
from metabench.errors import MetabenchError
from metabench.metrics import Metric, metric_for, metric_named
from metabench.protocol import setting_label
from metabench.registry import get_preset
from metabench.reports.data import (
    Filters,
    ReportData,
    apply_filters,
    assign_colors,
    check_filters,
    read_sources,
    setting_of,
)
from metabench.stats import RankSummary, SampleStats, paired_comparison, rank_summary, summary_table

GROUP_COLS = ("dataset", "test_dataset", "ways", "shots", "queries")
# What makes two rows comparable; a setting split over several protocols stays apart.
PROTOCOL_COLS = ("dataset", "test_dataset", "task_type", "ways", "shots", "queries", "seeds",
                 "test_episodes", "budget", "device")

# Leaderboard column: (cells-frame column, how cells of one row combine).
_COSTS = {
    "train_time_s": ("profile.train_time_s", "mean"),
    "steps": ("steps", "mean"),
    "train_episodes": ("train_episodes", "mean"),
    "adapt_ms": ("profile.adapt_median_s", "mean"),
    "peak_train_mb": ("profile.peak_memory_train_mb", "max"),
    "peak_eval_mb": ("profile.peak_memory_eval_mb", "max"),
}


def build_report_data(paths: Sequence[str | Path] = ("results",), filters: Filters | None = None,
                      all_runs: bool = False, confidence: float = 0.95, alpha: float = 0.05,
                      margin: float = 0.0) -> ReportData:
    """Read stores (folders, files or ``DIR/RUN``), filter, pool and summarise them."""
    filters = filters or Filters()
    episodes, cells, runs = read_sources(paths)
    check_filters(cells, filters)
    episodes, cells = apply_filters(episodes, filters), apply_filters(cells, filters)
    order = {run: (record.status == "complete", record.created, i)
             for i, (run, record) in enumerate(runs.items())}
    table, notes, kept = summarise(episodes, cells, confidence, alpha, margin, all_runs, order)
    table = attach_published(table, {run: _config_of(record) for run, record in runs.items()})
    # Runs that gave rows, and runs with no result at all (their failures are worth showing).
    no_results = set(cells["run"]) - set(cells.loc[cells["status"] == "ok", "run"])
    used = (set(kept["run"]) if len(kept) else set()) | no_results
    return ReportData(
        episodes=kept, cells=cells[cells["run"].isin(used)].reset_index(drop=True), table=table,
        runs={run: record for run, record in runs.items() if run in used},
        ranks=ranks_across_settings(table, alpha), notes=notes,
        colors=assign_colors(list(table["algorithm"]) if len(table) else []),
        confidence=confidence, alpha=alpha, margin=margin,
    )


def _config_of(record: Any) -> Any:
    try:
        return make_config(record.config)
    except MetabenchError:  # a store written by a newer or older metabench
        return None


def leaderboard(episodes: pd.DataFrame, cells: pd.DataFrame, confidence: float = 0.95,
                margin: float = 0.0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per protocol group x algorithm of a results frame (one run or several):
    mean and CI, rank, significance mark vs the best, seeds, budget use and costs."""
    return summarise(episodes, cells, confidence, alpha, margin)[0]


def summarise(episodes: pd.DataFrame, cells: pd.DataFrame, confidence: float = 0.95,
              alpha: float = 0.05, margin: float = 0.0, all_runs: bool = False,
              order: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """The leaderboard table, its notes, and the episodes it was computed from."""
    if episodes.empty:
        return pd.DataFrame(), [], episodes
    entries = protocol_entries(episodes, cells)
    entries = _choose_runs(entries, all_runs, order or {})
    kept = episodes.merge(entries[["run", "algorithm", *GROUP_COLS, "group", "label"]],
                          on=["run", "algorithm", *GROUP_COLS])
    parts = [_summarise_group(frame, confidence, alpha, margin)
             for _, frame in kept.groupby("group", sort=False)]
    table = pd.concat(parts, ignore_index=True)
    table = table.merge(entries.drop(columns=["algorithm"]).rename(columns={"label": "algorithm"}),
                        on=["group", "algorithm"], how="left")
    table = table.merge(_costs(cells, entries), on=["group", "algorithm"], how="left")
    table.insert(0, "setting", [setting_of(row) for row in table.to_dict("records")])
    return table, _notes(entries), kept.assign(algorithm=kept["label"]).drop(columns=["label"])


def protocol_entries(episodes: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per run x algorithm x setting with its protocol: seeds, test episodes per
    seed, budget, and (for a time budget) the device; ``group`` names the protocol."""
    keys = ["run", "algorithm", *GROUP_COLS]
    ran = episodes.groupby(keys, sort=False).agg(
        task_type=("task_type", "first"),
        seeds=("seed", lambda s: ",".join(map(str, sorted(set(s))))),
        test_episodes=("episode", lambda e: int(e.max()) + 1),
    ).reset_index()
    budgets = cells.groupby(keys, sort=False).agg(
        budget=("budget", "first"), device=("device", "first"),
        protocol=("protocol", lambda p: protocol_text(p.iloc[0])),
        hparams=("protocol", lambda p: hparams_text(p.iloc[0]))).reset_index()
    entries = ran.merge(budgets, on=keys, how="left")
    # A time budget depends on the machine; an episode budget does not.
    entries["device"] = entries["device"].where(entries["budget"].str.startswith("time:"), "")
    entries["group"] = [_group_name(row) for row in entries.to_dict("records")]
    return entries


def protocol_text(details: Any) -> str:
    """A cell's protocol details as one short line: ``batch norm: transductive; train:
    60w1s q5``; the usual checkpoint (best on validation) and torch threads (1) are left out,
    so rows that ran with other threads are labelled."""
    if not isinstance(details, Mapping):
        return ""
    usual = {"checkpoint": "best on validation", "torch_threads": DEFAULT_THREADS}
    parts = [f"{str(key).replace('_', ' ')}: {value}" for key, value in details.items()
             if usual.get(str(key), ()) != value and key != "hparams"]
    return "; ".join(parts)


def hparams_text(details: Any) -> str:
    """Where a cell's hyperparameters came from (defaults, set by hand, tuned with trials and
    trial budget); empty for cells stored before metabench recorded it."""
    return str(details.get("hparams") or "") if isinstance(details, Mapping) else ""


def attach_published(table: pd.DataFrame, configs: Mapping[str, Any]) -> pd.DataFrame:
    """Add a ``published`` column to rows whose run reproduced a paper preset: the
    paper's value ± interval for that algorithm and setting."""
    if table.empty or "run" not in table:
        return table
    presets: dict[str, Any] = {}  # each preset looked up once, not once per row
    texts = []
    for row in table.to_dict("records"):
        config = configs.get(row["run"])
        preset = _preset(config.preset, presets) if config is not None and config.preset else None
        setting = setting_label(row["task_type"], row["ways"], row["shots"])
        found = preset.published_for(str(row["algorithm"]), setting) if preset else None
        texts.append(found.text() if found else "")
    return table.assign(published=texts) if any(texts) else table


def _preset(name: str, cache: dict[str, Any]) -> Any:
    """The preset registered as ``name`` (None when its plugin is not loaded here)."""
    if name not in cache:
        try:
            cache[name] = get_preset(name)
        except MetabenchError:
            cache[name] = None
    return cache[name]


def _group_name(row: Mapping[Any, Any]) -> str:
    device = f" · {row['device']}" if row["device"] else ""
    return (f"{setting_of(row)} q{row['queries']} · {row['test_episodes']} test episodes · "
            f"seeds {row['seeds']} · {row['budget']}{device}")


def _choose_runs(entries: pd.DataFrame, all_runs: bool, order: Mapping[str, Any]) -> pd.DataFrame:
    """Per group and algorithm, the newest complete run (or every run, labelled by run)."""
    entries = entries.assign(label=entries["algorithm"])
    twice = entries.duplicated(["group", "algorithm"], keep=False)
    if all_runs:
        entries.loc[twice, "label"] = [f"{a} [{r}]" for a, r in
                                       zip(entries.loc[twice, "algorithm"], entries.loc[twice, "run"],
                                           strict=True)]
        return entries
    rank = entries["run"].map(lambda run: order.get(run, (True, "", 0)))
    entries = entries.assign(_order=rank).sort_values("_order", kind="stable")
    return entries.drop_duplicates(["group", "algorithm"], keep="last").drop(columns=["_order"])


def _summarise_group(frame: pd.DataFrame, confidence: float, alpha: float,
                     margin: float) -> pd.DataFrame:
    metric = metric_for(str(frame["task_type"].iloc[0]))
    scores = frame.assign(algorithm=frame["label"])
    table = summary_table(scores, metric=metric.name, group_cols=["group"], confidence=confidence,
                          alpha=alpha, margin=margin, higher_is_better=metric.higher_is_better)
    table.insert(1, "metric", metric.name)
    table = _with_curves(table, scores, confidence, metric)
    per_seed = scores.pivot_table(index="seed", columns="algorithm", values=metric.name,
                                  aggfunc="mean")
    if len(per_seed) < 2:
        return table.assign(seed_ci=np.nan, seed_mean=table["mean"])
    seeds = paired_comparison(per_seed, metric.higher_is_better, alpha, margin, confidence,
                              rank_test=False)
    table["seed_mean"] = table["algorithm"].map(seeds["mean"])
    table["seed_ci"] = [SampleStats(per_seed[name].dropna().to_numpy(), confidence).half_width
                        for name in table["algorithm"]]
    table["significant"] = table["algorithm"].map(seeds["significant"])
    table["p_t_holm"] = table["algorithm"].map(seeds["p_t_holm"])
    table["p_wilcoxon_holm"] = np.nan
    best = seeds.index[seeds["best"]][0]
    table["mark"] = ["" if name == best else ("*" if sig else "=")
                     for name, sig in zip(table["algorithm"], table["significant"], strict=True)]
    return table


def _with_curves(table: pd.DataFrame, scores: pd.DataFrame, confidence: float,
                 metric: Metric) -> pd.DataFrame:
    """Add each algorithm's adaptation curve (rl cells run with ``curve_steps``): the mean
    and interval over test episodes after 0, 1, ... steps (``curve_mean``, ``curve_ci``) and
    as text (``curve``)."""
    if "curve" not in scores or not scores["curve"].notna().any():
        return table
    curves = [_curve_stats(scores, name, confidence) for name in table["algorithm"]]
    table = table.copy()
    table["curve_mean"] = pd.Series([[s.mean for s in stats] for stats in curves],
                                    index=table.index, dtype=object)
    table["curve_ci"] = pd.Series([[s.half_width for s in stats] for stats in curves],
                                  index=table.index, dtype=object)
    table["curve"] = [" / ".join(metric.format_mean_ci(s.mean, s.half_width) for s in stats)
                      for stats in curves]
    return table


def _curve_stats(scores: pd.DataFrame, algorithm: str, confidence: float) -> list[SampleStats]:
    rows = scores.loc[(scores["algorithm"] == algorithm) & scores["curve"].notna(), "curve"]
    steps = np.array([json.loads(text) for text in rows], dtype=np.float64)
    if steps.ndim != 2:
        return []
    return [SampleStats(steps[:, k], confidence) for k in range(steps.shape[1])]


def _costs(cells: pd.DataFrame, entries: pd.DataFrame) -> pd.DataFrame:
    ok = cells[cells["status"] == "ok"].merge(
        entries[["run", "algorithm", *GROUP_COLS, "group", "label"]],
        on=["run", "algorithm", *GROUP_COLS])
    present = {k: v for k, v in _COSTS.items() if v[0] in ok}
    costs = ok.groupby(["group", "label"], as_index=False).agg(**present)
    if "adapt_ms" in costs:
        costs["adapt_ms"] = costs["adapt_ms"] * 1000.0
    peaks = [c for c in ("peak_train_mb", "peak_eval_mb") if c in costs]
    costs["peak_mb"] = costs[peaks].max(axis=1) if peaks else np.nan
    return costs.rename(columns={"label": "algorithm"})


def _notes(entries: pd.DataFrame) -> list[str]:
    notes = []
    for setting, frame in entries.assign(setting=[setting_of(r) for r in entries.to_dict("records")]
                                         ).groupby("setting", sort=False):
        groups = list(dict.fromkeys(frame["group"]))
        if len(groups) > 1:
            apart = " | ".join(
                f"{g.split(' · ', 1)[1]} ({', '.join(sorted(set(frame.loc[frame['group'] == g, 'run'])))})"
                for g in groups)
            notes.append(f"kept apart, different protocols: {setting}: {apart}")
    seeds = entries["seeds"].str.count(",") + 1
    if len(entries) and (seeds == 1).all():
        notes.append("one seed: intervals are over test episodes only")
    elif len(entries):
        notes.append("several seeds: seed ± is a t-interval over per-seed means; marks from a "
                     "paired t-test on per-seed means (Holm)")
    return notes


def ranks_across_settings(table: pd.DataFrame, alpha: float = 0.05) -> RankSummary | None:
    """Average ranks over a leaderboard's protocol groups, Friedman's test and Nemenyi's CD.

    Each metric is signed by its direction (accuracy higher, MSE lower is better), so
    classification and regression settings can be ranked together. Groups where an
    algorithm has no result are left out; None when fewer than 2 groups or 2 algorithms
    remain.
    """
    if table.empty:
        return None
    score = [metric_named(name).score(mean) for name, mean in zip(table["metric"], table["mean"],
                                                                   strict=True)]
    index = "group" if "group" in table else [c for c in ("metric", *GROUP_COLS) if c in table]
    wide = table.assign(score=score).pivot_table(index=index, columns="algorithm",
                                                 values="score").dropna(how="any")
    if wide.shape[0] < 2 or wide.shape[1] < 2:
        return None
    return rank_summary(wide, alpha=alpha)


def legend(confidence: float, margin: float, alpha: float) -> str:
    """What the marks and columns of the leaderboard mean, with the statistics in force."""
    return (
        f"± {100 * confidence:g}% t-interval; * significantly worse than the best, = not "
        f"significantly different (paired t and Wilcoxon, Holm, α {alpha:g}, margin {margin:g}); "
        "train s: meta-training time; ms/ep: adaptation time per test episode (median); "
        "MB: peak memory"
    )

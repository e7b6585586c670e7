"""Statistics for comparisons: t-intervals, paired tests with Holm correction, average ranks.

Raw samples are kept and every statistic is derived lazily (after pytest-benchmark), and a
difference counts only when it is both significant and larger than a stated margin (after asv).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from metabench import distributions
from metabench.errors import MetabenchError
from metabench.metrics import METRICS

PAIR_KEYS = ("seed", "episode")
WILCOXON_EXACT_MAX = 50  # scipy.stats.wilcoxon's "auto": exact (or permutation) up to 50 pairs
DEFAULT_GROUP_COLS = ("dataset", "ways", "shots", "queries")

COMPARISON_COLUMNS = [
    "mean", "ci", "n", "best", "diff", "p_t", "p_wilcoxon", "p_t_holm", "p_wilcoxon_holm",
    "significant",
]
SUMMARY_COLUMNS = [
    "algorithm", "mean", "ci", "n", "n_paired", "rank", "mark", "diff", "p_t_holm",
    "p_wilcoxon_holm", "significant",
]


def _check_level(name: str, value: float) -> float:
    if not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise MetabenchError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return float(value)


class SampleStats:
    """Descriptive statistics of one sample, computed lazily from the raw values."""

    def __init__(self, values: Iterable[float], confidence: float = 0.95) -> None:
        raw = values if isinstance(values, np.ndarray) else list(values)
        self.values = np.asarray(raw, dtype=float).ravel()
        self.confidence = _check_level("confidence", confidence)

    @cached_property
    def n(self) -> int:
        """Number of samples."""
        return int(self.values.size)

    @cached_property
    def mean(self) -> float:
        """Arithmetic mean (nan when empty)."""
        return float(self.values.mean()) if self.n else math.nan

    @cached_property
    def median(self) -> float:
        """Median (nan when empty)."""
        return float(np.median(self.values)) if self.n else math.nan

    @cached_property
    def std(self) -> float:
        """Sample standard deviation, ddof=1 (nan below two samples)."""
        return float(self.values.std(ddof=1)) if self.n >= 2 else math.nan

    @cached_property
    def sem(self) -> float:
        """Standard error of the mean."""
        return self.std / math.sqrt(self.n) if self.n >= 2 else math.nan

    @cached_property
    def half_width(self) -> float:
        """Half-width of the t-based confidence interval of the mean (nan below two samples)."""
        if self.n < 2:
            return math.nan
        return distributions.t_quantile((1.0 + self.confidence) / 2.0, self.n - 1) * self.sem

    @cached_property
    def ci(self) -> tuple[float, float]:
        """The confidence interval (low, high) of the mean."""
        return (self.mean - self.half_width, self.mean + self.half_width)

    @cached_property
    def iqr(self) -> float:
        """Interquartile range, numpy's linear interpolation (nan when empty)."""
        if not self.n:
            return math.nan
        q1, q3 = np.percentile(self.values, [25.0, 75.0])
        return float(q3 - q1)

    def __repr__(self) -> str:
        return f"SampleStats(n={self.n}, mean={self.mean:.6g}, half_width={self.half_width:.6g})"


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """Return (mean, half-width of the t-based confidence interval)."""
    sample = SampleStats(values, confidence)
    return sample.mean, sample.half_width


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in input order; monotone and capped at 1.

    NaN p-values (tests that could not run) stay NaN and do not count towards m.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def paired_t_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value; constant differences give 1 if zero, else 0."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.size < 2:
        return math.nan
    # Differences equal up to rounding make the t statistic undefined (0/0); use its limit.
    scale = max(1.0, float(np.abs(diff).max()))
    if np.ptp(diff) <= 1e-12 * scale:
        return 1.0 if abs(diff.mean()) <= 1e-12 * scale else 0.0
    return distributions.t_two_sided_p(distributions.paired_t_statistic(diff), diff.size - 1)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zero differences dropped); all zero gives 1.

    As ``scipy.stats.wilcoxon``: over 50 pairs the tie-corrected normal approximation
    (computed here), else scipy's exact or permutation method.
    """
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.size < 2:
        return math.nan
    if not np.any(diff):
        return 1.0
    if diff.size > WILCOXON_EXACT_MAX:
        return distributions.wilcoxon_normal_p(diff)
    from scipy import stats  # deferred (0.4 s): only small samples need its exact method

    return float(stats.wilcoxon(a, b).pvalue)


def _best_name(means: pd.Series, higher_is_better: bool) -> Hashable:
    # On exact ties the first column wins, so the choice is deterministic.
    return means.idxmax() if higher_is_better else means.idxmin()


def paired_comparison(
    scores: pd.DataFrame,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    margin: float = 0.0,
    confidence: float = 0.95,
    rank_test: bool = True,
) -> pd.DataFrame:
    """Compare every algorithm (column) with the best one on the same episodes (rows).

    Returns one row per algorithm, indexed by name, with columns ``mean``, ``ci`` (half-width),
    ``n``, ``best``, ``diff`` (mean minus the best's mean), ``p_t`` and ``p_wilcoxon``
    (raw), ``p_t_holm`` and ``p_wilcoxon_holm`` (Holm-corrected over the algorithms compared
    with the best) and ``significant``. Rule: a difference is significant when BOTH corrected
    p-values are below ``alpha`` and ``|diff| > margin``; requiring the parametric and the
    rank test to agree guards against the t-test's normality assumption on bounded, discrete
    per-episode accuracies. Rows with any missing score are dropped, so all columns are paired.
    With ``rank_test=False`` the t-test alone decides: for a handful of paired rows (per-seed
    means), where the Wilcoxon test cannot reach small p-values at all (n=5: p >= 0.0625);
    then ``p_wilcoxon`` is NaN.
    """
    _check_level("alpha", alpha)
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin >= 0):
        raise MetabenchError(f"margin must be >= 0 (a finite number), got {margin!r}")
    if scores.shape[1] == 0:
        raise MetabenchError("paired_comparison needs at least one algorithm column, got none")
    paired = scores.dropna(how="any").astype(float)
    means = paired.mean()
    best = _best_name(means, higher_is_better) if paired.shape[0] else paired.columns[0]
    rows = {name: _compare_column(paired[name], paired[best], confidence, rank_test)
            for name in paired}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["best"] = table.index == best
    others = ~table["best"]
    for column in ("p_t", "p_wilcoxon"):
        table[f"{column}_holm"] = np.nan
        table.loc[others, f"{column}_holm"] = holm(table.loc[others, column].to_numpy())
    table["significant"] = (
        others
        & (table["p_t_holm"] < alpha)
        & ((table["p_wilcoxon_holm"] < alpha) | (not rank_test))
        & (table["diff"].abs() > margin)
    )
    return table[COMPARISON_COLUMNS]


def _compare_column(values: pd.Series, best: pd.Series, confidence: float,
                    rank_test: bool) -> dict[str, float]:
    sample = SampleStats(values.to_numpy(), confidence)
    same = values.name == best.name
    a, b = values.to_numpy(), best.to_numpy()
    return {
        "mean": sample.mean,
        "ci": sample.half_width,
        "n": sample.n,
        "diff": sample.mean - float(b.mean()) if b.size else math.nan,
        "p_t": math.nan if same else paired_t_p(a, b),
        "p_wilcoxon": math.nan if same or not rank_test else wilcoxon_p(a, b),
    }


def summary_table(
    episodes: pd.DataFrame,
    metric: str = "accuracy",
    group_cols: Sequence[str] = DEFAULT_GROUP_COLS,
    confidence: float = 0.95,
    alpha: float = 0.05,
    margin: float = 0.0,
    higher_is_better: bool | None = None,
) -> pd.DataFrame:
    """One row per group x algorithm: mean, ci, n, rank and a significance mark vs the best.

    ``mean``, ``ci`` (half-width) and ``n`` use each algorithm's own episodes. The comparison
    is paired on (seed, episode) over the episodes every algorithm of the group has
    (``n_paired``): ``rank`` (1 = best, ties averaged) orders the paired means, and ``mark`` is
    "" for the best, "*" when significantly worse (rule of :func:`paired_comparison`), "=" when
    not significantly different (also when under two shared episodes leave nothing to test).
    ``higher_is_better`` defaults to the metric's own direction (:mod:`metabench.metrics`;
    higher for a metric it does not know).
    """
    group_cols = list(group_cols)
    _check_columns(episodes, [*group_cols, "algorithm", *PAIR_KEYS, metric])
    if higher_is_better is None:
        known = METRICS.get(metric)
        higher_is_better = known.higher_is_better if known else True
    parts = [
        _summarise_group(key, frame, group_cols, metric, confidence, alpha, margin,
                         higher_is_better)
        for key, frame in episodes.groupby(group_cols, sort=True, dropna=False)
    ]
    if not parts:
        return pd.DataFrame(columns=[*group_cols, *SUMMARY_COLUMNS])
    return pd.concat(parts, ignore_index=True)



def _check_columns(frame: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise MetabenchError(
            f"episodes frame lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns))}"
        )


def _wide_scores(frame: pd.DataFrame, metric: str, key: tuple) -> pd.DataFrame:
    counts = frame.groupby(["algorithm", *PAIR_KEYS]).size()
    if (counts > 1).any():
        algorithm, seed, episode = counts[counts > 1].index[0]
        raise MetabenchError(
            f"group {key} has several rows for algorithm '{algorithm}', seed {seed}, episode "
            f"{episode}; add the distinguishing column (e.g. 'run') to group_cols"
        )
    return frame.pivot(index=list(PAIR_KEYS), columns="algorithm", values=metric)


def _summarise_group(
    key: tuple, frame: pd.DataFrame, group_cols: list[str], metric: str, confidence: float,
    alpha: float, margin: float, higher_is_better: bool,
) -> pd.DataFrame:
    wide = _wide_scores(frame, metric, key)
    paired = paired_comparison(wide, higher_is_better, alpha, margin, confidence)
    own = {name: SampleStats(wide[name].dropna().to_numpy(), confidence) for name in wide}
    out = pd.DataFrame({
        "algorithm": paired.index,
        "mean": [own[name].mean for name in paired.index],
        "ci": [own[name].half_width for name in paired.index],
        "n": [own[name].n for name in paired.index],
        "n_paired": paired["n"].to_numpy(),
        "rank": paired["mean"].rank(ascending=not higher_is_better, method="average").to_numpy(),
        "mark": [_mark(row) for row in paired.itertuples()],
        "diff": paired["diff"].to_numpy(),
        "p_t_holm": paired["p_t_holm"].to_numpy(),
        "p_wilcoxon_holm": paired["p_wilcoxon_holm"].to_numpy(),
        "significant": paired["significant"].to_numpy(),
    })
    for column, value in zip(group_cols, key, strict=True):
        out.insert(group_cols.index(column), column, value)
    return out.sort_values("rank", kind="stable", ignore_index=True)


def _mark(row: Any) -> str:
    if row.best:
        return ""
    return "*" if row.significant else "="


def _check_complete(table: pd.DataFrame) -> pd.DataFrame:
    if table.shape[1] < 2 or table.shape[0] < 1:
        raise MetabenchError(
            f"ranking needs at least 2 algorithms (columns) and 1 setting (row), got "
            f"{table.shape[1]} and {table.shape[0]}"
        )
    incomplete = table.index[table.isna().any(axis=1)]
    if len(incomplete):
        raise MetabenchError(
            f"ranking needs every algorithm on every setting; row {incomplete[0]!r} has missing "
            "values (drop or fill those rows first)"
        )
    return table.astype(float)


def rank_table(table: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """Ranks within each row (setting), 1 = best, ties get the average of their ranks."""
    table = _check_complete(table)
    return table.rank(axis=1, ascending=not higher_is_better, method="average")


def average_ranks(table: pd.DataFrame, higher_is_better: bool = True) -> pd.Series:
    """Average rank of each algorithm (column) over the settings (rows); 1 = best."""
    return rank_table(table, higher_is_better).mean(axis=0)


def friedman_test(table: pd.DataFrame) -> tuple[float, float]:
    """Friedman's chi-square and p-value, rows are blocks, tie-corrected as in scipy.

    Rows where every algorithm ties carry no information; if all rows do, returns (0, 1).
    """
    ranks = rank_table(table).to_numpy()
    n, k = ranks.shape
    rank_sums = ranks.sum(axis=0)
    correction = _tie_correction(ranks, n, k)
    if correction == 0.0:
        return 0.0, 1.0  # every row fully tied: no evidence of any difference
    statistic = 12.0 / (n * k * (k + 1)) * np.sum(rank_sums**2) - 3.0 * n * (k + 1)
    statistic /= correction
    return float(statistic), distributions.chi2_sf(statistic, k - 1)


def _tie_correction(ranks: np.ndarray, n: int, k: int) -> float:
    ties = sum(float(np.sum(counts**3 - counts))
               for counts in (np.unique(row, return_counts=True)[1] for row in ranks))
    return 1.0 - ties / (n * k * (k * k - 1))


def nemenyi_critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks for k algorithms on n settings (Demšar 2006)."""
    _check_level("alpha", alpha)
    if k < 2 or n < 1:
        raise MetabenchError(f"critical difference needs k >= 2 and n >= 1, got k={k}, n={n}")
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Demšar's q_alpha: the studentized range quantile at infinite df divided by sqrt(2)."""
    return distributions.studentized_range_quantile(1.0 - alpha, k) / math.sqrt(2.0)


@dataclass(frozen=True)
class RankSummary:
    """Average ranks over settings with Friedman's test and Nemenyi's critical difference.

    ``ranks`` is sorted best first (1 = best). Two algorithms whose average ranks differ by
    more than ``critical_difference`` differ significantly at ``alpha`` (Demšar 2006), which
    is only meaningful when Friedman's test rejects equal ranks.
    """

    ranks: pd.Series
    settings: int
    statistic: float
    p_value: float
    critical_difference: float
    alpha: float

    def describe(self) -> str:
        """One line for a terminal or a report."""
        ranks = ", ".join(f"{name} {rank:.2f}" for name, rank in self.ranks.items())
        return (
            f"average ranks over {self.settings} settings: {ranks} · Friedman χ² "
            f"{self.statistic:.2f}, p {self.p_value:.3g} · Nemenyi critical difference "
            f"{self.critical_difference:.2f} (α {self.alpha:g})"
        )


def rank_summary(
    table: pd.DataFrame, higher_is_better: bool = True, alpha: float = 0.05
) -> RankSummary:
    """Average ranks of the algorithms (columns) over the settings (rows), tested."""
    ranks = average_ranks(table, higher_is_better).sort_values(kind="stable")
    statistic, p_value = friedman_test(table)  # the statistic does not depend on the direction
    n, k = table.shape
    return RankSummary(ranks, n, statistic, p_value, nemenyi_critical_difference(k, n, alpha), alpha)

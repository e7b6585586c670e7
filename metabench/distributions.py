"""The few distribution functions the statistics need, from ``scipy.special`` alone.

``scipy.stats`` takes about 0.4 s to import, a fifth of a report's time as a command; each
function here is the formula scipy.stats itself evaluates (the same ``scipy.special`` calls),
so results agree with it to rounding (``tests/test_distributions.py`` checks them against it).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

# The studentized range at infinite degrees of freedom is found by integrating over this
# grid of standard-normal values (the density beyond +-9 is below 1e-17).
_GRID = np.linspace(-9.0, 9.0, 3601)
_GRID_DENSITY = np.exp(-0.5 * _GRID**2) / math.sqrt(2.0 * math.pi)
_GRID_CDF = special.ndtr(_GRID)


def t_quantile(probability: float, df: float) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom."""
    return float(special.stdtrit(df, probability))


def t_two_sided_p(statistic: float, df: float) -> float:
    """Two-sided p-value of a t statistic."""
    return float(2.0 * special.stdtr(df, -abs(statistic)))


def chi2_sf(statistic: float, df: float) -> float:
    """Survival function of the chi-square distribution."""
    return float(special.chdtrc(df, statistic))


def normal_two_sided_p(z: float) -> float:
    """Two-sided p-value of a standard-normal statistic."""
    return float(2.0 * special.ndtr(-abs(z)))


def paired_t_statistic(diff: np.ndarray) -> float:
    """The paired (one-sample) t statistic of differences, as scipy's ``ttest_rel``."""
    n = diff.size
    return float(diff.mean() / math.sqrt(diff.var(ddof=1) / n))


def wilcoxon_normal_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value by the normal approximation, zero differences
    dropped, tie-corrected, no continuity correction: scipy's ``wilcoxon`` for more than 50
    pairs (its "auto" method there)."""
    nonzero = diff[diff != 0]
    n = nonzero.size
    if n == 0:
        return math.nan
    magnitudes = np.abs(nonzero)
    _, inverse, counts = np.unique(magnitudes, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    r_plus = float(ranks[nonzero > 0].sum())
    mean = n * (n + 1.0) * 0.25
    variance = n * (n + 1.0) * (2.0 * n + 1.0) - float(np.sum(counts.astype(float) ** 3 - counts)) / 2
    return normal_two_sided_p((r_plus - mean) / math.sqrt(variance / 24.0))


def studentized_range_cdf(q: float, k: int) -> float:
    """P(range of ``k`` independent standard normals <= ``q``), infinite degrees of freedom."""
    inner = np.clip(special.ndtr(_GRID + q) - _GRID_CDF, 0.0, 1.0) ** (k - 1)
    return float(k * np.trapezoid(_GRID_DENSITY * inner, _GRID))


def studentized_range_quantile(probability: float, k: int) -> float:
    """The ``probability`` quantile of the studentized range of ``k`` means, infinite degrees
    of freedom (bisection on :func:`studentized_range_cdf` to 1e-10)."""
    low, high = 0.0, 1.0
    while studentized_range_cdf(high, k) < probability:
        low, high = high, 2.0 * high
    while high - low > 1e-10:
        middle = 0.5 * (low + high)
        if studentized_range_cdf(middle, k) < probability:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)

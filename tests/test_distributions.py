"""metabench.distributions against scipy.stats, which it replaces on the reading path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from metabench import distributions
from metabench.stats import paired_t_p, wilcoxon_p

# Per-episode accuracies are multiples of 1/queries: ties and zero differences everywhere.
accuracies = st.lists(st.integers(0, 15), min_size=51, max_size=400)


@settings(max_examples=60, deadline=None)
@given(accuracies, st.data())
def test_wilcoxon_equals_scipy_over_fifty_pairs(first: list[int], data: st.DataObject) -> None:
    second = data.draw(st.lists(st.integers(0, 15), min_size=len(first), max_size=len(first)))
    a, b = np.asarray(first) / 15, np.asarray(second) / 15
    if not np.any(a - b):
        return
    assert wilcoxon_p(a, b) == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("size", [2, 7, 20, 50])
def test_wilcoxon_small_samples_are_scipys_exact_method(size: int) -> None:
    rng = np.random.default_rng(size)
    a, b = rng.random(size), rng.random(size)
    assert wilcoxon_p(a, b) == sps.wilcoxon(a, b).pvalue


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=2, max_size=300))
def test_paired_t_equals_scipy(values: list[float]) -> None:
    a = np.asarray(values)
    b = np.roll(a, 1) * 0.5
    diff = a - b
    if np.ptp(diff) <= 1e-9:
        return  # the constant-difference limit is metabench's own rule (tests/test_stats.py)
    assert paired_t_p(a, b) == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("df", [1, 2, 4, 29, 599, 10_000])
@pytest.mark.parametrize("probability", [0.9, 0.975, 0.995])
def test_t_quantile(df: int, probability: float) -> None:
    assert distributions.t_quantile(probability, df) == pytest.approx(
        sps.t.ppf(probability, df), rel=1e-12)


@pytest.mark.parametrize("df", [1, 3, 9])
@pytest.mark.parametrize("statistic", [0.0, 0.5, 6.0, 40.0])
def test_chi2_sf(df: int, statistic: float) -> None:
    assert distributions.chi2_sf(statistic, df) == pytest.approx(
        sps.chi2.sf(statistic, df), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("k", [2, 3, 5, 10, 20, 40])
@pytest.mark.parametrize("probability", [0.9, 0.95, 0.99])
def test_studentized_range_quantile(k: int, probability: float) -> None:
    assert distributions.studentized_range_quantile(probability, k) == pytest.approx(
        sps.studentized_range.ppf(probability, k, np.inf), abs=1e-8)


def test_reading_statistics_does_not_import_scipy_stats() -> None:
    """The point of the module: a report's statistics over 50+ episodes need no scipy.stats."""
    probe = (
        "import sys, numpy as np, pandas as pd\n"
        "from metabench.stats import summary_table, rank_summary\n"
        "rng = np.random.default_rng(0)\n"
        "rows = [dict(dataset='d', ways=5, shots=s, queries=15, algorithm=a, seed=0, episode=e,"
        " accuracy=rng.integers(0, 16) / 15) for s in (1, 5) for a in 'abc' for e in range(60)]\n"
        "table = summary_table(pd.DataFrame(rows))\n"
        "wide = table.pivot(index='shots', columns='algorithm', values='mean')\n"
        "rank_summary(wide)\n"
        "print('scipy.stats' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

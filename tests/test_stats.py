"""metabench.stats against scipy and hand-computed values on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from metabench.errors import MetabenchError
from metabench.stats import (
    SampleStats,
    average_ranks,
    friedman_test,
    holm,
    mean_ci,
    nemenyi_critical_difference,
    nemenyi_q,
    paired_comparison,
    rank_summary,
    summary_table,
)

VALUES = np.array([0.62, 0.71, 0.55, 0.80, 0.67, 0.74, 0.59, 0.66])


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_sample_stats_match_scipy(confidence):
    s = SampleStats(VALUES, confidence)
    low, high = sps.t.interval(confidence, len(VALUES) - 1, loc=VALUES.mean(), scale=sps.sem(VALUES))
    assert s.n == 8
    assert s.mean == pytest.approx(VALUES.mean(), rel=1e-12)
    assert s.std == pytest.approx(np.std(VALUES, ddof=1), rel=1e-12)
    assert s.sem == pytest.approx(sps.sem(VALUES), rel=1e-12)
    assert s.ci == pytest.approx((low, high), rel=1e-12)
    assert s.half_width == pytest.approx((high - low) / 2, rel=1e-12)
    assert s.median == pytest.approx(0.665, rel=1e-12)
    assert s.iqr == pytest.approx(np.subtract(*np.percentile(VALUES, [75, 25])), rel=1e-12)


def test_sample_stats_small_samples_do_not_crash():
    one = SampleStats([0.5])
    assert one.mean == 0.5 and math.isnan(one.half_width) and math.isnan(one.std)
    empty = SampleStats([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.iqr)
    constant = SampleStats([0.5, 0.5, 0.5])
    assert constant.half_width == 0.0 and constant.ci == (0.5, 0.5)


def test_sample_stats_accepts_generators_and_series():
    assert SampleStats(x for x in VALUES).mean == pytest.approx(VALUES.mean())
    assert SampleStats(pd.Series(VALUES)).n == 8


def test_mean_ci_and_bad_confidence():
    mean, half = mean_ci(VALUES, 0.95)
    assert mean == pytest.approx(VALUES.mean())
    assert half == pytest.approx(SampleStats(VALUES).half_width)
    with pytest.raises(MetabenchError, match="confidence must be strictly between 0 and 1, got 95"):
        mean_ci(VALUES, 95)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        # sorted 0.005, 0.01, 0.03, 0.04 -> 4*.005, 3*.01, 2*.03, 1*.04 -> running max 0.06
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        ([0.5, 0.3, 0.2], [0.6, 0.6, 0.6]),
        ([0.6, 0.7], [1.0, 1.0]),
        ([0.01, 0.01], [0.02, 0.02]),
        ([0.2], [0.2]),
        ([0.02, float("nan"), 0.01], [0.02, float("nan"), 0.02]),
        ([], []),
    ],
)
def test_holm_hand_computed(p, expected):
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12, equal_nan=True)


def _scores(rng: np.random.Generator, n: int = 40) -> pd.DataFrame:
    base = rng.uniform(0.3, 0.9, n)
    return pd.DataFrame({
        "a": base + rng.normal(0.00, 0.05, n),
        "b": base + rng.normal(0.10, 0.05, n),
        "c": base + rng.normal(0.09, 0.05, n),
        "d": base + rng.normal(0.03, 0.05, n),
    })


def test_paired_comparison_matches_scipy_and_holm():
    scores = _scores(np.random.default_rng(0))
    table = paired_comparison(scores, alpha=0.05)
    assert table.index[table["best"]].tolist() == ["b"]
    others = ["a", "c", "d"]
    p_t = [sps.ttest_rel(scores[o], scores["b"]).pvalue for o in others]
    p_w = [sps.wilcoxon(scores[o], scores["b"]).pvalue for o in others]
    np.testing.assert_allclose(table.loc[others, "p_t"], p_t, rtol=1e-12)
    np.testing.assert_allclose(table.loc[others, "p_wilcoxon"], p_w, rtol=1e-12)
    np.testing.assert_allclose(table.loc[others, "p_t_holm"], holm(p_t), rtol=1e-12)
    np.testing.assert_allclose(table.loc[others, "p_wilcoxon_holm"], holm(p_w), rtol=1e-12)
    np.testing.assert_allclose(table["diff"], scores.mean() - scores["b"].mean(), atol=1e-12)
    assert math.isnan(table.loc["b", "p_t"]) and not table.loc["b", "significant"]
    assert table.loc["b", "ci"] == pytest.approx(SampleStats(scores["b"]).half_width)
    expected = (table["p_t_holm"] < 0.05) & (table["p_wilcoxon_holm"] < 0.05)
    assert table["significant"].tolist() == expected.tolist()
    assert table.loc["a", "significant"] and table.loc["d", "significant"]
    assert not table.loc["c", "significant"]


def test_paired_comparison_margin_hides_small_differences():
    scores = _scores(np.random.default_rng(0))
    diffs = paired_comparison(scores)["diff"].abs()
    table = paired_comparison(scores, margin=float(diffs["d"]) + 1e-9)
    assert table.loc["a", "significant"]
    assert not table.loc["d", "significant"]
    with pytest.raises(MetabenchError, match="margin must be >= 0"):
        paired_comparison(scores, margin=-0.1)


def test_paired_comparison_lower_is_better():
    scores = _scores(np.random.default_rng(1))
    table = paired_comparison(scores, higher_is_better=False)
    assert table.index[table["best"]].tolist() == ["a"]
    assert (table["diff"] >= 0).all()


def test_paired_comparison_degenerate_differences():
    scores = pd.DataFrame({"a": [0.5, 0.6, 0.7, 0.8], "b": [0.5, 0.6, 0.7, 0.8],
                           "c": [0.4, 0.5, 0.6, 0.7]})
    table = paired_comparison(scores)
    assert table.loc["a", "best"]
    # identical to the best: p = 1 for both tests; constant non-zero difference: t-test p = 0
    assert table.loc["b", "p_t"] == 1.0 and table.loc["b", "p_wilcoxon"] == 1.0
    assert table.loc["c", "p_t"] == 0.0
    assert table.loc["c", "p_wilcoxon"] == pytest.approx(sps.wilcoxon(scores["c"], scores["a"]).pvalue)


def test_paired_comparison_non_string_column_labels():
    table = paired_comparison(pd.DataFrame({0: [0.1, 0.2, 0.3], 1: [0.5, 0.4, 0.6]}))
    assert table.loc[1, "best"] and table.loc[0, "diff"] == pytest.approx(-0.3)


def test_paired_comparison_drops_unpaired_rows():
    scores = _scores(np.random.default_rng(2), n=12)
    holes = scores.copy()
    holes.loc[[0, 5], "c"] = np.nan
    table = paired_comparison(holes)
    assert (table["n"] == 10).all()
    kept = scores.drop(index=[0, 5])
    assert table.loc["a", "mean"] == pytest.approx(kept["a"].mean())


def _episodes(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for shots, shift in ((1, 0.0), (5, 0.2)):
        for seed in (0, 1):
            for episode in range(30):
                base = rng.uniform(0.2, 0.6) + shift
                for algorithm, gain in (("maml", 0.0), ("protonet", 0.12), ("reptile", 0.11)):
                    rows.append({
                        "algorithm": algorithm, "dataset": "glyphs", "ways": 5, "shots": shots,
                        "queries": 15, "seed": seed, "episode": episode,
                        "accuracy": base + gain + rng.normal(0, 0.04),
                    })
    return pd.DataFrame(rows)


def test_summary_table_groups_ranks_and_marks():
    episodes = _episodes(np.random.default_rng(3))
    table = summary_table(episodes)
    assert list(table.columns[:4]) == ["dataset", "ways", "shots", "queries"]
    assert len(table) == 6
    for shots, group in table.groupby("shots"):
        part = episodes[episodes["shots"] == shots]
        wide = part.pivot(index=["seed", "episode"], columns="algorithm", values="accuracy")
        expected = paired_comparison(wide)
        by_name = group.set_index("algorithm")
        assert by_name.loc["protonet", "mark"] == "" and by_name.loc["protonet", "rank"] == 1.0
        assert by_name.loc["maml", "mark"] == "*"
        assert by_name.loc["reptile", "mark"] == ("*" if expected.loc["reptile", "significant"]
                                                  else "=")
        assert group["rank"].tolist() == sorted(group["rank"])
        np.testing.assert_allclose(by_name["mean"], expected.loc[by_name.index, "mean"])
        np.testing.assert_allclose(by_name["ci"], expected.loc[by_name.index, "ci"])
        assert (by_name["n"] == 60).all()


def test_summary_table_compares_on_intersection():
    episodes = _episodes(np.random.default_rng(4))
    drop = (episodes["algorithm"] == "maml") & (episodes["episode"] < 5) & (episodes["seed"] == 0)
    table = summary_table(episodes[~drop])
    one_shot = table[table["shots"] == 1].set_index("algorithm")
    assert one_shot.loc["maml", "n"] == 55 and one_shot.loc["protonet", "n"] == 60
    assert (one_shot["n_paired"] == 55).all()
    kept = episodes[~drop & (episodes["shots"] == 1)]
    assert one_shot.loc["protonet", "mean"] == pytest.approx(
        kept.loc[kept["algorithm"] == "protonet", "accuracy"].mean())


def test_summary_table_mse_is_lower_better_and_errors():
    episodes = _episodes(np.random.default_rng(5)).rename(columns={"accuracy": "mse"})
    table = summary_table(episodes, metric="mse")
    assert (table.loc[table["rank"] == 1.0, "algorithm"] == "maml").all()
    with pytest.raises(MetabenchError, match="lacks column"):
        summary_table(episodes, metric="accuracy")
    doubled = pd.concat([episodes, episodes])
    with pytest.raises(MetabenchError, match="several rows for algorithm"):
        summary_table(doubled, metric="mse")


RANK_TABLE = pd.DataFrame(
    {"maml": [0.80, 0.60, 0.70, 0.50], "protonet": [0.85, 0.60, 0.75, 0.55],
     "reptile": [0.70, 0.65, 0.70, 0.52], "matching": [0.75, 0.55, 0.60, 0.40]},
    index=["omniglot-1", "omniglot-5", "mini-1", "mini-5"],
)


def test_average_ranks_with_ties_by_hand():
    ranks = average_ranks(RANK_TABLE)
    # rows: (2,1,4,3), (2.5,2.5,1,4), (2.5,1,2.5,4), (3,1,2,4)
    expected = {"maml": 10 / 4, "protonet": 5.5 / 4, "reptile": 9.5 / 4, "matching": 15 / 4}
    assert ranks.to_dict() == pytest.approx(expected)
    lower = average_ranks(RANK_TABLE, higher_is_better=False)
    assert lower.to_dict() == pytest.approx({k: 5 - v for k, v in expected.items()})


def test_friedman_matches_scipy():
    statistic, p = friedman_test(RANK_TABLE)
    reference = sps.friedmanchisquare(*(RANK_TABLE[c] for c in RANK_TABLE))
    assert statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert p == pytest.approx(reference.pvalue, rel=1e-12)
    rng = np.random.default_rng(6)
    table = pd.DataFrame(rng.integers(0, 5, size=(12, 5)).astype(float))
    reference = sps.friedmanchisquare(*(table[c] for c in table))
    assert friedman_test(table) == pytest.approx((reference.statistic, reference.pvalue), rel=1e-12)


def test_rank_summary_orders_tests_and_describes():
    summary = rank_summary(RANK_TABLE)
    assert list(summary.ranks.index) == ["protonet", "reptile", "maml", "matching"]
    assert summary.ranks["protonet"] == pytest.approx(5.5 / 4)
    reference = sps.friedmanchisquare(*(RANK_TABLE[c] for c in RANK_TABLE))
    assert summary.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert summary.critical_difference == pytest.approx(nemenyi_critical_difference(4, 4))
    assert summary.settings == 4
    line = summary.describe()
    assert line.startswith("average ranks over 4 settings: protonet 1.38, reptile 2.38")
    assert "Nemenyi critical difference 2.35 (α 0.05)" in line and "\n" not in line
    lower = rank_summary(RANK_TABLE, higher_is_better=False)
    assert lower.ranks.index[0] == "matching" and lower.statistic == summary.statistic


def test_friedman_all_tied_and_incomplete_tables():
    assert friedman_test(pd.DataFrame([[0.5, 0.5, 0.5], [0.7, 0.7, 0.7]])) == (0.0, 1.0)
    holes = RANK_TABLE.copy()
    holes.loc["mini-1", "maml"] = np.nan
    with pytest.raises(MetabenchError, match="row 'mini-1' has missing values"):
        friedman_test(holes)
    with pytest.raises(MetabenchError, match="at least 2 algorithms"):
        average_ranks(RANK_TABLE[["maml"]])


DEMSAR_Q = {  # Demšar (2006), table 5(a), printed to 3 decimals (some off by 1 in the last)
    0.05: [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164],
    0.10: [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920],
}


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_nemenyi_q_matches_demsar_table(alpha):
    for k, q in enumerate(DEMSAR_Q[alpha], start=2):
        assert nemenyi_q(k, alpha) == pytest.approx(q, abs=1e-3)
    assert round(nemenyi_q(4, 0.05), 3) == 2.569


def test_nemenyi_critical_difference():
    assert nemenyi_critical_difference(4, 14) == pytest.approx(
        nemenyi_q(4) * math.sqrt(4 * 5 / (6 * 14)), rel=1e-12)
    assert nemenyi_critical_difference(4, 14) == pytest.approx(1.2536, abs=2e-4)
    with pytest.raises(MetabenchError, match="k >= 2"):
        nemenyi_critical_difference(1, 10)
    with pytest.raises(MetabenchError, match="alpha must be strictly between"):
        nemenyi_critical_difference(4, 10, alpha=5)

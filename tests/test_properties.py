"""Property-based tests (Hypothesis) of the boundaries: any mapping of options gives a
Config or a MetabenchError; statistics of random samples are finite or a clear error; the
sampler gives the same episode for the same identity in another process.

Each test is derandomized (a fixed seed per test), so CI explores the same examples every
run and a failure reproduces; ``pytest --hypothesis-seed=N -p no:randomly`` with
``derandomize`` removed explores further.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="Hypothesis is not installed (dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from metabench.config import _FIELDS, Config, make_config  # noqa: E402
from metabench.errors import MetabenchError  # noqa: E402
from metabench.stats import SampleStats, paired_comparison  # noqa: E402

NUMBERS = st.one_of(st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans())
SCALARS = st.one_of(NUMBERS, st.text(max_size=12), st.none(),
                    st.sampled_from(["1,,2", "nan", "inf", "-1", "episodes:5", "time:1e999",
                                     "1.5", "maml.inner_lr=nan", "a=b", "auto"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
KEYS = st.one_of(st.sampled_from([*sorted(_FIELDS), "set", "seed", "threads", "variant"]),
                 st.text(max_size=8), st.integers())


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=5))
def test_any_options_give_a_config_or_a_metabench_error(options):
    try:
        config = make_config(options)
    except MetabenchError as error:
        assert "\n" not in str(error)
        return
    assert isinstance(config, Config)
    for name in ("queries", "episodes", "cpus_per_cell", "max_retries"):
        assert isinstance(getattr(config, name), int)
    for name in ("confidence", "alpha", "margin", "gpus_per_cell", "scale"):
        assert math.isfinite(getattr(config, name))
    assert all(-(2**63) <= seed < 2**63 for seed in config.seeds)
    json.dumps(config.to_dict(), default=str)
    config.fingerprint()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=60),
       st.floats(min_value=0.5, max_value=0.999))
def test_finite_samples_give_finite_intervals(values, confidence):
    sample = SampleStats(values, confidence)
    low, high = sample.ci
    assert math.isfinite(low) and math.isfinite(high)
    assert low <= sample.mean + 1e-6 * (1 + abs(sample.mean))
    assert high >= sample.mean - 1e-6 * (1 + abs(sample.mean))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()))
def test_a_confidence_level_outside_0_1_is_a_clear_error(level):
    if isinstance(level, float | int) and 0 < level < 1:
        SampleStats([1.0, 2.0], level)
        return
    with pytest.raises(MetabenchError, match="confidence"):
        SampleStats([1.0, 2.0], level)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.floats(min_value=0, max_value=1), min_size=3, max_size=3),
                min_size=2, max_size=30),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0)))
def test_paired_comparison_is_well_formed_or_refuses_the_margin(rows, margin):
    scores = pd.DataFrame(rows, columns=["a", "b", "c"])
    if not (math.isfinite(margin) and margin >= 0):
        with pytest.raises(MetabenchError, match="margin"):
            paired_comparison(scores, margin=margin)
        return
    table = paired_comparison(scores, margin=margin)
    assert table["best"].sum() == 1
    assert np.isfinite(table["mean"]).all() and np.isfinite(table["diff"]).all()
    for column in ("p_t_holm", "p_wilcoxon_holm"):
        known = table.loc[~table["best"], column].dropna()
        assert ((known >= 0) & (known <= 1)).all()


TESTS = str(__import__("pathlib").Path(__file__).resolve().parent)


def episode_digests(identities: list[tuple]) -> list[str]:
    """A hash of each episode (split, ways, shots, seed, index) of a small synthetic set."""
    import hashlib

    from metabench.data.synthetic import SyntheticImages
    from metabench.episodes import EpisodeSampler
    from metabench.protocol import TaskSpec

    dataset = SyntheticImages(classes=(20, 8, 10), examples=20)
    digests = []
    for split, ways, shots, seed, index in identities:
        episode = EpisodeSampler(dataset, split, TaskSpec(ways, shots, 3), seed).episode(index)
        digest = hashlib.sha256()
        for tensor in (episode.support_x, episode.support_y, episode.query_x, episode.query_y):
            digest.update(tensor.contiguous().numpy().tobytes())
        digests.append(digest.hexdigest())
    return digests


_ELSEWHERE = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
              "from test_properties import episode_digests; "
              "print(json.dumps(episode_digests(json.loads(sys.argv[2]))))")


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["train", "validation", "test"]),
                          st.integers(2, 8), st.integers(1, 3),
                          st.integers(-(2**63), 2**63 - 1), st.integers(0, 10**6)),
                min_size=1, max_size=8))
def test_the_sampler_gives_the_same_episode_in_another_process(identities):
    there = subprocess.run([sys.executable, "-c", _ELSEWHERE, TESTS, json.dumps(identities)],
                           check=True, capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}).stdout
    assert json.loads(there) == episode_digests(identities)

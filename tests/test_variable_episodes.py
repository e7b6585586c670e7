"""Any-way any-shot episodes: the Meta-Dataset sampler's bounds, purity and distribution."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats
from test_episodes import decode, labelled_dataset

from metabench.config import make_config
from metabench.errors import MetabenchError
from metabench.protocol import AnyShot, TaskSpec
from metabench.variable_episodes import (
    RaggedEpisodeBatch,
    VariableEpisodeSampler,
    support_per_class,
    support_set_size,
)

SPEC = TaskSpec(0, 0, 10, "classification", AnyShot())
# Unequal classes: some below 2 x max_query, some above max_per_class + max_query.
COUNTS = [4, 7, 12, 20, 20, 25, 33, 40, 60, 90, 150, 230] * 6


def test_episodes_respect_every_bound_over_many_identities():
    dataset, options = labelled_dataset(COUNTS), SPEC.any_shot
    assert options is not None
    sampler = VariableEpisodeSampler(dataset, "train", SPEC, seed=1)
    counts = np.array(COUNTS)
    for index in range(300):
        draw = sampler.composition(index)
        sizes = counts[list(draw.classes)]
        assert options.min_ways <= draw.ways <= min(options.max_ways, len(COUNTS))
        assert len(set(draw.classes)) == draw.ways
        assert draw.queries == min(options.max_query, int((sizes // 2).min()))
        support = np.array(draw.support)
        assert (support >= 1).all() and (support <= sizes - draw.queries).all()
        assert draw.ways <= draw.support_size <= options.max_support
        contributions = np.minimum(options.max_per_class, sizes - draw.queries)
        assert draw.support_size <= contributions.sum()
    episode = sampler.episode(7)
    draw = sampler.composition(7)
    support, query = decode(episode.support_x), decode(episode.query_x)
    assert len(set(support) | set(query)) == len(support) + len(query)  # no image twice
    labels = episode.support_y.tolist()
    assert [draw.classes[k] for k in labels] == [c for c, _ in support]
    assert torch.equal(torch.bincount(episode.query_y), torch.full((draw.ways,), draw.queries))


def test_the_size_formulas_are_meta_datasets():
    # sample_support_set_size: min(max, sum floor(beta * min(100, remaining) + 1)).
    remaining = np.array([5, 50, 300])
    assert support_set_size(remaining, 100, 500, 0.5) == 3 + 26 + 51
    assert support_set_size(remaining, 100, 60, 0.99) == 60
    # sample_num_support_per_class: floor(p * (size - ways)) + 1, capped by what remains.
    sizes = np.array([10, 30, 60])
    shares = support_per_class(sizes, sizes - 5, 43, np.ones(3))
    assert shares.tolist() == [5, 13, 25]  # 4 + 1, 12 + 1, min(24 + 1, 55)


def test_the_same_identity_gives_the_same_episode_in_two_processes():
    code = ("from test_episodes import labelled_dataset; "
            "from test_variable_episodes import SPEC, COUNTS; "
            "from metabench.variable_episodes import VariableEpisodeSampler; "
            "s = VariableEpisodeSampler(labelled_dataset(COUNTS), 'train', SPEC, seed=4); "
            "e = s.episode(123); print(e.classes, e.support_y.tolist(), "
            "float(e.support_x.sum()), float(e.query_x.sum()))")
    here = VariableEpisodeSampler(labelled_dataset(COUNTS), "train", SPEC, seed=4).episode(123)
    expected = (f"{here.classes} {here.support_y.tolist()} {float(here.support_x.sum())} "
                f"{float(here.query_x.sum())}")
    env_path = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": env_path}).stdout
    assert out.strip() == expected


def test_ways_and_support_sizes_follow_the_papers_distribution():
    """With 30 classes of 20 images: ways ~ U{5..30}; q = 10, so every class has 10 left and
    the total support size is ways * floor(beta * 10 + 1), i.e. S / ways ~ U{1..10}."""
    sampler = VariableEpisodeSampler(labelled_dataset([20] * 30), "train", SPEC, seed=2026)
    draws = [sampler.composition(i) for i in range(3000)]
    ways = np.array([d.ways for d in draws])
    per_class = np.array([d.drawn_support // d.ways for d in draws])
    assert all(d.drawn_support % d.ways == 0 and d.queries == 10 for d in draws)
    observed_ways = np.bincount(ways - 5, minlength=26)
    assert stats.chisquare(observed_ways).pvalue > 0.01
    observed_shots = np.bincount(per_class - 1, minlength=10)
    assert len(observed_shots) == 10 and stats.chisquare(observed_shots).pvalue > 0.01
    # A sampler that drew one fixed way count would fail the same test.
    assert stats.chisquare(np.bincount(np.full(3000, 5) - 5, minlength=26)).pvalue < 1e-6


def test_imbalance_stays_within_the_log_weight_range():
    sampler = VariableEpisodeSampler(labelled_dataset([40] * 12), "train", SPEC, seed=0)
    ratios = []
    for i in range(400):
        draw = sampler.composition(i)
        support = np.array(draw.support)
        if draw.support_size - draw.ways >= 10 * draw.ways:  # big enough to show the shares
            ratios.append(support.max() / support.min())
    assert ratios and max(ratios) <= 4.0 + 1.0  # exp(log 2 - log 0.5) = 4, plus flooring


def test_a_batch_of_several_episodes_is_ragged_and_one_is_stacked():
    sampler = VariableEpisodeSampler(labelled_dataset(COUNTS), "train", SPEC)
    ragged = sampler.batch([0, 1, 2])
    assert isinstance(ragged, RaggedEpisodeBatch) and len(ragged) == 3
    assert [e.index for e in ragged] == [0, 1, 2]
    single = sampler.batch([5])
    assert not isinstance(single, RaggedEpisodeBatch) and single.support_x.shape[0] == 1


def test_any_ways_needs_any_shots_and_known_sampler_options():
    config = make_config({"ways": "any", "shots": "any", "sampler_options": ["max_ways=20"]})
    assert config.ways == (0,) and dict(config.sampler_options) == {"max_ways": 20}
    with pytest.raises(MetabenchError, match="ways=0 is too small; expected >= 2, or 'any'"):
        make_config({"ways": "any", "shots": "5"})
    with pytest.raises(MetabenchError, match="sampler options are for --ways any"):
        make_config({"sampler_options": ["max_ways=20"]})
    with pytest.raises(MetabenchError, match="max_support=10 is invalid"):
        AnyShot(max_support=10)


def test_the_cli_refuses_an_unknown_sampler_option(run_cli):
    result = run_cli("compare", "-a", "protonet", "--ways", "any", "--shots", "any",
                     "--sampler-option", "max_way=20", "--no-progress")
    assert result.code == 2
    assert "sampler option 'max_way' is not known" in result.err
    assert "Traceback" not in result.err


def test_the_rebuilt_command_keeps_any_and_the_sampler_options():
    from metabench.rerun import compare_command

    config = make_config({"ways": "any", "shots": "any", "sampler_options": ["max_ways=20"]})
    command = compare_command(config.to_dict())
    assert "--ways any --shots any" in command and "--sampler-option max_ways=20" in command
    words = command.split()
    rebuilt = make_config({"ways": words[words.index("--ways") + 1],
                           "shots": words[words.index("--shots") + 1],
                           "sampler_options": ["max_ways=20"]})
    assert rebuilt.fingerprint() == config.fingerprint()

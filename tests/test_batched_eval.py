"""Batched evaluation (``predict_batch``): the same per-episode results as one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabench import AlgorithmSetup, TaskSpec, registry
from metabench.backbones import MLP, Conv4
from metabench.data.sinusoid import Sinusoid
from metabench.episodes import EpisodeSampler
from metabench.evaluation import CellFailed, episode_scores, evaluate_batch
from metabench.hparams import apply_overrides
from metabench.plugins import load_plugins
from metabench.profiling import PhaseProfiler
from metabench_plugins import maml

SPEC = TaskSpec(ways=5, shots=1, queries=3)
# The gradient-based algorithms whose predict_batch adapts episodes together (vmap).
NAMES = ["maml", "fomaml", "anil", "foanil", "metasgd"]
TOLERANCE = 1e-5  # per-episode accuracy and loss


@pytest.fixture(autouse=True)
def plugins():
    load_plugins(["metabench_plugins.maml", "metabench_plugins.anil", "metabench_plugins.metasgd"])


def build(name: str, spec: TaskSpec = SPEC, backbone=None, **overrides):
    torch.manual_seed(0)
    input_shape = (1,) if spec.task_type == "regression" else (1, 28, 28)
    setup = AlgorithmSetup(backbone or Conv4(input_shape, hidden=16), spec, torch.device("cpu"), seed=0,
                           input_shape=input_shape)
    entry = registry.get("algorithm", name)
    return entry.factory(setup, apply_overrides(name, entry.defaults, overrides))


def trained(algorithm, data, spec: TaskSpec = SPEC):
    """The algorithm after one meta-training step (weights away from their initialisation)."""
    train = EpisodeSampler(data, "train", algorithm.train_task_spec(spec), seed=1)
    algorithm.meta_train_step(train.batch(range(2)))
    return algorithm


def both_ways(algorithm, batch):
    """Outputs of predict_batch one episode at a time, then through vmap."""
    algorithm.batched_eval = False
    one = algorithm.predict_batch(batch)
    algorithm.batched_eval = True
    return one, algorithm.predict_batch(batch)


def assert_same_scores(one, many, batch, spec: TaskSpec = SPEC):
    expected, actual = episode_scores(one, batch.query_y, spec), episode_scores(many, batch.query_y, spec)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=0, atol=TOLERANCE, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_at_a_time(name, tiny_dataset):
    # channels_last=False: vmap computes in the contiguous layout; between layouts, one at a
    # time, float rounding alone moves a loss by up to ~5e-5 after 3 steps at inner_lr 0.4.
    algorithm = trained(build(name, channels_last=False), tiny_dataset)
    batch = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(6))
    one, many = both_ways(algorithm, batch)
    assert many.shape == one.shape == (6, 15, 5)
    assert [torch.equal(one[i], algorithm.predict(e)) for i, e in enumerate(batch)] == [True] * 6
    assert_same_scores(one, many, batch)
    torch.testing.assert_close(many, one, rtol=0, atol=1e-4)


def test_each_episode_keeps_its_own_batch_norm_statistics(tiny_dataset):
    """Shuffling the episodes of a batch shuffles the outputs and changes nothing else."""
    algorithm = build("maml", channels_last=False)
    algorithm.batched_eval = True
    batch = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(4))
    reversed_batch = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch([3, 2, 1, 0])
    forward, backward = algorithm.predict_batch(batch), algorithm.predict_batch(reversed_batch)
    torch.testing.assert_close(backward, forward.flip(0), rtol=0, atol=1e-5)


def test_non_transductive_and_chunked_batches_match(tiny_dataset, monkeypatch):
    monkeypatch.setattr(maml, "BATCH_IMAGES", 40)  # 2 episodes of 20 images per vmapped chunk
    algorithm = trained(build("maml", channels_last=False, transductive=False), tiny_dataset)
    batch = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(5))
    one, many = both_ways(algorithm, batch)
    assert_same_scores(one, many, batch)


def test_regression_batched_equals_one_at_a_time():
    spec = TaskSpec(shots=5, queries=7, task_type="regression")
    algorithm = build("maml", spec, backbone=MLP((1,)))
    batch = EpisodeSampler(Sinusoid(), "test", spec, seed=0).batch(range(4))
    one, many = both_ways(algorithm, batch)
    assert many.shape == (4, 7, 1)
    assert_same_scores(one, many, batch, spec)


def test_the_harness_predicts_a_batch_in_one_call_timed_per_episode(tiny_dataset):
    algorithm = build("anil", channels_last=False)
    batch = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(4))
    calls = []
    algorithm.predict_batch = lambda b, original=algorithm.predict_batch: calls.append(len(b)) or original(b)
    profiler = PhaseProfiler("cpu")
    with profiler.phase("test"):
        scores = evaluate_batch(algorithm, batch, SPEC, profiler.step)
    assert calls == [4] and len(profiler.phases["test"].steps) == 4
    one_by_one = torch.stack([algorithm.predict(e) for e in batch])
    expected = episode_scores(one_by_one, batch.query_y, SPEC)
    np.testing.assert_allclose(scores["loss"], expected["loss"], rtol=0, atol=TOLERANCE)


class OneAtATime:
    """A third-party algorithm without predict_batch: the harness predicts episode by episode."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def predict(self, episode):
        self.seen.append(episode.index)
        return torch.zeros(len(episode.query_y), SPEC.ways)


def test_an_algorithm_without_predict_batch_is_scored_one_episode_at_a_time(tiny_dataset):
    algorithm = OneAtATime()
    batch = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(3))
    profiler = PhaseProfiler("cpu")
    with profiler.phase("test"):
        scores = evaluate_batch(algorithm, batch, SPEC, profiler.step)
    assert algorithm.seen == [0, 1, 2] and len(profiler.phases["test"].steps) == 3
    np.testing.assert_allclose(scores["accuracy"], [0.2] * 3)


def test_a_batch_prediction_of_the_wrong_shape_fails_the_cell(tiny_dataset):
    algorithm = OneAtATime()
    algorithm.predict_batch = lambda batch: torch.zeros(len(batch), 4)  # type: ignore[attr-defined]
    batch = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(3))
    with pytest.raises(CellFailed, match=r"predict_batch returned \(3, 4\) for a batch of 3 "
                                         r"episodes; expected shape \(3, 15, 5\)"):
        evaluate_batch(algorithm, batch, SPEC)

"""Prototypical Networks: logits are minus squared distances to class means."""

from __future__ import annotations

import pytest
import torch

from metabench import AlgorithmSetup, MetabenchError, TaskSpec
from metabench.backbones import Conv4
from metabench.episodes import EpisodeSampler
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig, prototype_logits

SPEC = TaskSpec(ways=5, shots=3, queries=2)


def make_protonet(**overrides) -> ProtoNet:
    torch.manual_seed(0)
    setup = AlgorithmSetup(Conv4((1, 28, 28)), SPEC, torch.device("cpu"), seed=0)
    return ProtoNet(setup, ProtoNetConfig(**overrides))


def by_hand(support, labels, query, ways: int) -> torch.Tensor:
    logits = torch.empty(len(query), ways)
    for k in range(ways):
        mean = support[labels == k].mean(0)
        for i, q in enumerate(query):
            logits[i, k] = -sum((a - b) ** 2 for a, b in zip(q.tolist(), mean.tolist(), strict=True))
    return logits


def test_logits_are_minus_squared_distances_to_class_means():
    generator = torch.Generator().manual_seed(0)
    support, query = torch.randn(15, 8, generator=generator), torch.randn(4, 8, generator=generator)
    labels = torch.arange(5).repeat_interleave(3)
    expected = by_hand(support, labels, query, 5)
    torch.testing.assert_close(prototype_logits(support, labels, query, 5), expected)


def test_predict_uses_the_embedding_of_the_backbone(tiny_dataset):
    protonet = make_protonet()
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    logits = protonet.predict(episode)
    protonet.model.eval()
    with torch.no_grad():
        support, query = protonet.model(episode.support_x), protonet.model(episode.query_x)
    torch.testing.assert_close(logits, by_hand(support, episode.support_y, query, 5),
                               rtol=1e-4, atol=1e-3)


def test_batched_logits_equal_per_task_logits():
    generator = torch.Generator().manual_seed(1)
    support, query = torch.randn(3, 10, 4, generator=generator), torch.randn(3, 6, 4)
    labels = torch.arange(5).repeat_interleave(2).expand(3, 10)
    batched = prototype_logits(support, labels, query, 5)
    for t in range(3):
        torch.testing.assert_close(batched[t], prototype_logits(support[t], labels[t], query[t], 5))


def test_meta_train_step_lowers_the_loss_on_a_fixed_batch(tiny_dataset):
    protonet = make_protonet(meta_batch_size=2)
    batch = EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).batch(range(2))
    first = protonet.meta_train_step(batch)
    for _ in range(4):
        last = protonet.meta_train_step(batch)
    assert set(first) == {"loss", "accuracy"}
    assert last["loss"] < first["loss"]


def test_train_task_spec_allows_more_ways_than_testing():
    spec = make_protonet(train_ways=20, train_queries=5).train_task_spec(SPEC)
    assert (spec.ways, spec.shots, spec.queries) == (20, 3, 5)
    assert make_protonet().train_task_spec(SPEC) == SPEC


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"lr": 0.0}, "protonet.lr=0.0 must be positive"),
     ({"train_ways": 1}, "protonet.train_ways=1 must be 0")],
)
def test_bad_hyperparameters_are_one_line_errors(overrides, message):
    with pytest.raises(MetabenchError, match=message):
        make_protonet(**overrides)

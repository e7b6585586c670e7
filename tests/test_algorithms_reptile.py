"""Reptile: the outer step formula, epsilon annealing, minibatches, test-time fine-tuning."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from metabench import AlgorithmSetup, EpisodeBatch, MetabenchError, TaskSpec
from metabench.backbones import Conv4
from metabench.episodes import EpisodeSampler
from metabench_plugins.reptile import Reptile, ReptileConfig, minibatches

SPEC = TaskSpec(ways=5, shots=1, queries=2)


def make_reptile(**overrides) -> Reptile:
    torch.manual_seed(0)
    setup = AlgorithmSetup(Conv4((1, 28, 28)), SPEC, torch.device("cpu"), seed=0)
    return Reptile(setup, ReptileConfig(**overrides))


def sgd_phi(model, episode, lr: float, steps: int) -> list[torch.Tensor]:
    """Adapted weights by hand: full-batch SGD on the support set."""
    model = copy.deepcopy(model)
    for _ in range(steps):
        loss = F.cross_entropy(model(episode.support_x), episode.support_y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= lr * g
    return [p.detach() for p in model.parameters()]


def test_one_outer_step_equals_the_formula(tiny_dataset):
    reptile = make_reptile(inner_optimizer="sgd", inner_lr=0.05, inner_steps=3, inner_batch=100,
                           outer_lr=0.5, train_shots=2)
    spec = reptile.train_task_spec(SPEC)
    batch = EpisodeSampler(tiny_dataset, "train", spec, seed=0).batch(range(2))
    theta = [p.detach().clone() for p in reptile.model.parameters()]
    phis = [sgd_phi(reptile.model, episode, 0.05, 3) for episode in batch]
    metrics = reptile.meta_train_step(batch)
    assert metrics["epsilon"] == 0.5
    for i, (new, old) in enumerate(zip(reptile.model.parameters(), theta, strict=True)):
        mean_phi = (phis[0][i] + phis[1][i]) / 2
        torch.testing.assert_close(new.detach(), old + 0.5 * (mean_phi - old), rtol=1e-5, atol=1e-6)


def test_first_inner_adam_step_uses_beta1_zero(tiny_dataset):
    reptile = make_reptile(inner_steps=1, inner_batch=100, outer_lr=1.0)
    episode = EpisodeSampler(tiny_dataset, "train", reptile.train_task_spec(SPEC)).episode(0)
    model = copy.deepcopy(reptile.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.999))
    F.cross_entropy(model(episode.support_x), episode.support_y).backward()
    optimizer.step()
    reptile.meta_train_step(EpisodeBatch.stack([episode]))
    for ours, expected in zip(reptile.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(ours.detach(), expected.detach(), rtol=1e-5, atol=1e-7)


def test_epsilon_anneals_linearly_to_its_final_value():
    reptile = make_reptile(outer_lr=1.0, outer_lr_final=0.2, anneal_steps=4)
    values = []
    for step in range(6):
        reptile.outer_steps = step
        values.append(round(reptile.epsilon(), 6))
    assert values == [1.0, 0.8, 0.6, 0.4, 0.2, 0.2]


def test_by_default_epsilon_anneals_over_the_budget():
    reptile = make_reptile(outer_lr=1.0, outer_lr_final=0.2)
    assert reptile.hparams.anneal_steps == 0
    values = []
    for fraction in (0.0, 0.25, 0.5, 1.0):
        reptile.set_budget_progress(fraction)
        values.append(round(reptile.epsilon(), 6))
    assert values == [1.0, 0.8, 0.6, 0.2]
    reptile.outer_steps = 1_000_000  # the step count plays no part then
    assert round(reptile.epsilon(), 6) == 0.2


def test_minibatches_cycle_through_permutations():
    generator = torch.Generator().manual_seed(0)
    batches = minibatches(count=10, size=4, steps=5, generator=generator)
    assert [len(b) for b in batches] == [4] * 5
    rows = torch.cat(batches)
    assert sorted(rows[:10].tolist()) == list(range(10))  # the first permutation, whole
    assert minibatches(count=5, size=5, steps=3, generator=generator) == [None, None, None]


def test_train_task_spec_uses_train_shots_and_one_query():
    spec = make_reptile(train_shots=10).train_task_spec(SPEC)
    assert (spec.ways, spec.shots, spec.queries) == (5, 10, 1)
    assert make_reptile(train_shots=0).train_task_spec(SPEC).shots == SPEC.shots


def test_predict_is_pure_and_order_independent(tiny_dataset):
    reptile = make_reptile(test_steps=3, test_batch=2)
    sampler = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0)
    first, second = sampler.episode(0), sampler.episode(1)
    before = copy.deepcopy(reptile.state_dict())
    a = reptile.predict(first)
    reptile.predict(second)
    torch.testing.assert_close(reptile.predict(first), a)
    assert a.shape == (SPEC.ways * SPEC.queries, SPEC.ways) and a.grad_fn is None
    after = reptile.state_dict()
    for name, value in before["model"].items():
        assert torch.equal(after["model"][name], value)
    assert torch.equal(after["generator"], before["generator"])


def test_predict_fine_tunes_with_sgd_like_the_formula(tiny_dataset):
    reptile = make_reptile(inner_optimizer="sgd", inner_lr=0.05, test_steps=2, test_batch=100)
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    model = copy.deepcopy(reptile.model)
    phi = sgd_phi(model, episode, 0.05, 2)
    with torch.no_grad():
        for p, value in zip(model.parameters(), phi, strict=True):
            p.copy_(value)
        expected = model(episode.query_x)
    torch.testing.assert_close(reptile.predict(episode), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"inner_optimizer": "rmsprop"}, "reptile.inner_optimizer='rmsprop' is not known"),
        ({"inner_lr": 0.0}, "reptile.inner_lr=0.0 must be positive"),
        ({"outer_lr": -1.0}, "reptile.outer_lr=-1.0 must be >= 0"),
    ],
)
def test_bad_hyperparameters_are_one_line_errors(overrides, message):
    with pytest.raises(MetabenchError, match=message) as error:
        make_reptile(**overrides)
    assert "\n" not in str(error.value)

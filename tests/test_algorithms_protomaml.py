"""First-order Proto-MAML: its meta-gradient against a direct autograd computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import metabench
from metabench.protocol import Episode, EpisodeBatch, EpisodeId
from metabench_plugins.protomaml import ProtoMAML, ProtoMAMLConfig
from metabench_plugins.protonet import prototype_logits


def episode(ways: int = 4, seed: int = 0) -> Episode:
    generator = torch.Generator().manual_seed(seed)
    shots = torch.tensor([1, 3, 2, 5, 1, 4][:ways])
    support_y = torch.arange(ways).repeat_interleave(shots)
    query_y = torch.arange(ways).repeat_interleave(3)
    support_x = torch.randn(len(support_y), 1, 6, 6, generator=generator)
    query_x = torch.randn(len(query_y), 1, 6, 6, generator=generator)
    return Episode(support_x, support_y, query_x, query_y, tuple(range(ways)),
                   EpisodeId("test", "train", 0, 0))


def algorithm(**hparams: float) -> ProtoMAML:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(64, 8))
    setup = metabench.AlgorithmSetup(backbone, metabench.TaskSpec(5, 1, 3), torch.device("cpu"))
    return ProtoMAML(setup, ProtoMAMLConfig(**hparams))  # type: ignore[arg-type]


def direct_meta_gradient(model: nn.Module, task: Episode, lr: float, steps: int
                         ) -> dict[str, torch.Tensor]:
    """The first-order meta-gradient written out: the adapted weights theta' = theta - lr *
    sum(g) (g constants) and the head W' = W0(theta) - lr * sum(gW), so the gradient of the
    query loss is dL/dtheta' + J_W0(theta)^T dL/dW' + J_b0(theta)^T dL/db'."""
    theta = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}

    def embed(params: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params, (x,))

    ways = int(task.support_y.max()) + 1
    one_hot = F.one_hot(task.support_y, ways).float()
    prototypes = (one_hot.T @ embed(theta, task.support_x)) / one_hot.sum(0)[:, None]
    w0, b0 = 2 * prototypes, -(prototypes**2).sum(-1)

    def support_loss(params: dict, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(embed(params, task.support_x) @ w.T + b, task.support_y)

    fast = {name: p.detach() for name, p in theta.items()}
    w, b = w0.detach(), b0.detach()
    for _ in range(steps):
        g_params, g_w, g_b = torch.func.grad(support_loss, argnums=(0, 1, 2))(fast, w, b)
        fast = {name: p - lr * g_params[name] for name, p in fast.items()}
        w, b = w - lr * g_w, b - lr * g_b
    leaves = {name: p.clone().requires_grad_() for name, p in fast.items()}
    w, b = w.clone().requires_grad_(), b.clone().requires_grad_()
    query_loss = F.cross_entropy(embed(leaves, task.query_x) @ w.T + b, task.query_y)
    d_fast = torch.autograd.grad(query_loss, [*leaves.values(), w, b])
    through_head = torch.autograd.grad([w0, b0], list(theta.values()),
                                       grad_outputs=[d_fast[-2], d_fast[-1]])
    return {name: d + h for name, d, h in zip(theta, d_fast[:-2], through_head, strict=True)}


@pytest.mark.parametrize("steps", [1, 3])
def test_the_meta_gradient_matches_a_direct_autograd_computation(steps):
    learner = algorithm(train_steps=steps, inner_lr=0.1)
    task = episode()
    learner.accumulate_meta_gradient(EpisodeBatch.stack([task]))
    expected = direct_meta_gradient(learner.model, task, 0.1, steps)
    for name, parameter in learner.model.named_parameters():
        assert parameter.grad is not None
        torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-4, atol=1e-6)
    # The head's path matters: without it the gradient would differ.
    conv = learner.model[0].weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0


def test_without_inner_steps_it_is_a_prototypical_network():
    learner = algorithm(train_steps=0)
    task = episode(ways=5, seed=3)
    params = dict(learner.model.named_parameters())
    logits = learner.query_logits(params, task, steps=0)
    # Support and query sets go through the network apart (batch statistics of each).
    support, query = learner.model(task.support_x), learner.model(task.query_x)
    reference = prototype_logits(support, task.support_y, query, 5)
    # The linear head differs from -distance by ||x||^2 per query: the same softmax.
    torch.testing.assert_close(logits.log_softmax(-1), reference.log_softmax(-1),
                               rtol=1e-4, atol=1e-5)


def test_it_predicts_any_number_of_ways_and_trains():
    learner = algorithm()
    for ways in (2, 4, 6):
        assert learner.predict(episode(ways)).shape == (3 * ways, ways)
    before = [p.detach().clone() for p in learner.model.parameters()]
    from metabench.variable_episodes import RaggedEpisodeBatch

    metrics = learner.meta_train_step(RaggedEpisodeBatch([episode(3), episode(5, seed=1)]))
    assert set(metrics) == {"loss", "accuracy"} and metrics["loss"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, learner.model.parameters(),
                                                     strict=True))


def test_a_bad_hyperparameter_is_refused():
    with pytest.raises(metabench.MetabenchError, match=r"protomaml\.inner_lr=0\.0 must be positive"):
        algorithm(inner_lr=0.0)

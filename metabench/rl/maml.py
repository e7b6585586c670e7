"""MAML-RL's two loops on fixed batches of trajectories (Finn et al. 2017, section 5.3):
the inner loop adapts the policy by policy-gradient steps on the support trajectories; the
outer loss is the policy-gradient surrogate of the query trajectories under the adapted
weights, differentiated through the inner steps (second order) or with them treated as
constants (first order).

The paper's outer optimiser is TRPO; this module gives the meta-gradient, and the
algorithm that uses it (a later part of issue 16) steps it with Adam, as
first-order/PPO-style reimplementations do: said in its documentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from metabench.rl.policy_gradient import GAMMA, advantages, surrogate_loss
from metabench.rl.rollout import Params, Trajectories


def adapt(policy: nn.Module, support: Trajectories, inner_lr: float, steps: int = 1,
          first_order: bool = False, params: Params | None = None,
          gamma: float = GAMMA) -> dict[str, Tensor]:
    """The policy's weights after ``steps`` policy-gradient steps of size ``inner_lr`` on
    the ``support`` trajectories (their advantages fixed, computed once). Second order
    keeps the graph, so the adapted weights stay differentiable in the initial ones."""
    weights: dict[str, Tensor] = dict(params if params is not None else policy.named_parameters())
    signal = advantages(support, gamma)
    for _ in range(steps):
        loss = surrogate_loss(policy, support, signal, weights)
        grads = torch.autograd.grad(loss, list(weights.values()), create_graph=not first_order)
        weights = {name: value - inner_lr * grad
                   for (name, value), grad in zip(weights.items(), grads, strict=True)}
    return weights


def adapted_weights(policy: nn.Module, support: Trajectories, inner_lr: float, steps: int,
                    params: Params | None = None) -> dict[str, Tensor]:
    """Test-time adaptation: ``steps`` first-order policy-gradient steps from the policy's
    weights (or from ``params``, e.g. an earlier adaptation's), detached."""
    start = None if params is None else {n: v.detach().requires_grad_() for n, v in params.items()}
    with torch.enable_grad():
        adapted = adapt(policy, support, inner_lr, steps, first_order=True, params=start)
    return {name: value.detach() for name, value in adapted.items()}


def meta_loss(policy: nn.Module, tasks: Sequence[tuple[Trajectories, Trajectories]],
              inner_lr: float, steps: int = 1, first_order: bool = False,
              gamma: float = GAMMA) -> Tensor:
    """The mean over tasks of the query surrogate loss under the adapted weights, for
    ``(support, query)`` trajectory pairs; ``backward()`` gives the meta-gradient."""
    losses = []
    for support, query in tasks:
        adapted = adapt(policy, support, inner_lr, steps, first_order, gamma=gamma)
        losses.append(query_loss(policy, adapted, query, first_order, gamma))
    return torch.stack(losses).mean()


def query_loss(policy: nn.Module, adapted: dict[str, Tensor], query: Trajectories,
               first_order: bool = False, gamma: float = GAMMA) -> Tensor:
    """One task's outer loss: the query surrogate under ``adapted`` (from :func:`adapt`,
    kept with its graph for second order); first order treats the inner steps as constants
    (the adapted weights move with the initial ones, d adapted / d initial = identity)."""
    if first_order:
        initial = dict(policy.named_parameters())
        adapted = {name: initial[name] + (value - initial[name]).detach()
                   for name, value in adapted.items()}
    return surrogate_loss(policy, query, advantages(query, gamma), adapted)

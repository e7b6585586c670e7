"""MAML-RL's meta-gradient on a fixed batch of trajectories against a direct computation:
autograd through an explicit flat-vector version of the two loops, and finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from metabench.rl.envs import Navigation2D
from metabench.rl.maml import adapt, meta_loss, query_loss
from metabench.rl.policy_gradient import advantages, log_likelihoods
from metabench.rl.rollout import GaussianPolicy, Trajectories, exploration_noise, rollout

INNER_LR = 0.1


def fixed_batch() -> tuple[GaussianPolicy, list[tuple[Trajectories, Trajectories]]]:
    """A small float64 policy and two tasks' support and query trajectories, collected once."""
    env = Navigation2D()
    env.horizon = 12
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, hidden=(8,)).double()
    tasks = env.sample_tasks(2, torch.Generator().manual_seed(1)).double()
    pairs = []
    for index in range(2):
        rows = tasks[index:index + 1].repeat(3, 1)
        support = rollout(env, policy, rows, exploration_noise(env, [index], "support", 3).double())
        query = rollout(env, policy, rows, exploration_noise(env, [index], "query", 3).double())
        pairs.append((support, query))
    return policy, pairs


def direct_meta_loss(policy: GaussianPolicy, pairs: list[tuple[Trajectories, Trajectories]],
                     flat: Tensor) -> Tensor:
    """The same two loops written out on one flat parameter vector."""
    names = [name for name, _ in policy.named_parameters()]
    shapes = [p.shape for _, p in policy.named_parameters()]

    def unflatten(vector: Tensor) -> dict[str, Tensor]:
        parts, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = shape.numel()
            parts[name] = vector[start:start + size].reshape(shape)
            start += size
        return parts

    def surrogate(vector: Tensor, trajectories: Trajectories) -> Tensor:
        weights = unflatten(vector)
        mean, std = functional_call(policy, weights, (trajectories.observations,))
        z = (trajectories.actions - mean) / std
        logp = (-0.5 * z**2 - std.log()).sum(-1)  # constants drop out of the gradient
        signal = advantages(trajectories).detach()
        return -(logp * signal * trajectories.mask).sum() / trajectories.mask.sum()

    total = flat.new_zeros(())
    for support, query in pairs:
        (grad,) = torch.autograd.grad(surrogate(flat, support), flat, create_graph=True)
        total = total + surrogate(flat - INNER_LR * grad, query)
    return total / len(pairs)


def flat_parameters(policy: GaussianPolicy) -> Tensor:
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def test_second_order_meta_gradient_matches_a_direct_autograd_computation():
    policy, pairs = fixed_batch()
    meta_loss(policy, pairs, INNER_LR).backward()
    ours = torch.cat([p.grad.flatten() for p in policy.parameters()])
    flat = flat_parameters(policy).requires_grad_()
    (direct,) = torch.autograd.grad(direct_meta_loss(policy, pairs, flat), flat)
    torch.testing.assert_close(ours, direct, rtol=1e-7, atol=1e-9)


def test_second_order_meta_gradient_matches_finite_differences():
    policy, pairs = fixed_batch()
    meta_loss(policy, pairs, INNER_LR).backward()
    ours = torch.cat([p.grad.flatten() for p in policy.parameters()])
    flat = flat_parameters(policy)
    for index in (0, 5, 17, flat.numel() - 1):  # first layer, hidden bias, head, log-std
        step = torch.zeros_like(flat)
        step[index] = 1e-6
        with torch.enable_grad():
            up = direct_meta_loss(policy, pairs, (flat + step).requires_grad_())
            down = direct_meta_loss(policy, pairs, (flat - step).requires_grad_())
        numeric = (up - down).item() / 2e-6
        assert abs(numeric - ours[index].item()) <= 1e-5 + 1e-4 * abs(numeric), index


def test_first_order_meta_gradient_is_the_query_gradient_at_the_adapted_weights():
    policy, pairs = fixed_batch()
    meta_loss(policy, pairs, INNER_LR, first_order=True).backward()
    ours = torch.cat([p.grad.flatten() for p in policy.parameters()])
    expected = torch.zeros_like(ours)
    for support, query in pairs:
        adapted = {k: v.detach().requires_grad_() for k, v in
                   adapt(policy, support, INNER_LR, first_order=True).items()}
        logp = log_likelihoods(policy, query, adapted)
        loss = -(logp * advantages(query) * query.mask).sum() / query.mask.sum()
        grads = torch.autograd.grad(loss, list(adapted.values()))
        expected += torch.cat([g.flatten() for g in grads]) / len(pairs)
    torch.testing.assert_close(ours, expected)
    second = fixed_batch()[0]
    meta_loss(second, pairs, INNER_LR).backward()
    assert not torch.allclose(torch.cat([p.grad.flatten() for p in second.parameters()]), ours)


def adapted_returns(policy: GaussianPolicy, env: Navigation2D, goals: Tensor,
                    per_task: int) -> tuple[float, float]:
    """Mean return before and after one inner step, over ``goals`` (test tasks)."""
    before, after = [], []
    for index in range(goals.shape[0]):
        rows = goals[index:index + 1].repeat(per_task, 1)
        support = rollout(env, policy, rows, exploration_noise(env, [f"test{index}"], "support",
                                                                per_task))
        adapted = {k: v.detach() for k, v in adapt(policy, support, INNER_LR,
                                                   first_order=True).items()}
        query = rollout(env, policy, rows, exploration_noise(env, [f"test{index}"], "query",
                                                             per_task), adapted)
        before.append(support.returns.mean().item())
        after.append(query.returns.mean().item())
    return sum(before) / len(before), sum(after) / len(after)


@pytest.mark.slow
def test_maml_rl_learns_to_adapt_on_navigation():
    """After 25 meta-steps (20 s here), one adaptation step from the meta-learnt policy
    beats one from a random initialisation, and its own return before adapting."""
    env, per_task = Navigation2D(), 20
    goals = env.sample_tasks(10, torch.Generator().manual_seed(999))
    torch.manual_seed(0)
    random_init = GaussianPolicy(2, 2)
    policy = GaussianPolicy(2, 2)
    policy.load_state_dict(random_init.state_dict())
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.01)
    for step in range(25):
        tasks = env.sample_tasks(10, torch.Generator().manual_seed(step))
        pairs = []
        for index in range(10):
            rows = tasks[index:index + 1].repeat(per_task, 1)
            ids = [f"{step}/{index}"]
            support = rollout(env, policy, rows, exploration_noise(env, ids, "support", per_task))
            adapted = {k: v.detach() for k, v in adapt(policy, support, INNER_LR,
                                                       first_order=True).items()}
            query = rollout(env, policy, rows, exploration_noise(env, ids, "query", per_task),
                            adapted)
            pairs.append((support, query))
        optimizer.zero_grad()
        meta_loss(policy, pairs, INNER_LR).backward()
        optimizer.step()
    before, after = adapted_returns(policy, env, goals, per_task)
    _, random_after = adapted_returns(random_init, env, goals, per_task)
    assert after > before + 5 and after > random_after + 20, (before, after, random_after)


def test_the_per_task_query_loss_is_the_meta_loss_of_one_task():
    policy, pairs = fixed_batch()
    support, query = pairs[0]
    for first_order in (False, True):
        adapted = adapt(policy, support, INNER_LR, first_order=first_order)
        torch.testing.assert_close(query_loss(policy, adapted, query, first_order),
                                   meta_loss(policy, pairs[:1], INNER_LR, first_order=first_order))

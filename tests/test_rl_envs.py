"""The meta-RL building blocks (issue 16, first part): the vectorised environments by hand,
seeded exploration noise, rollouts, and the policy-gradient estimator against hand-computed
gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from metabench.rl.envs import Navigation2D, Velocity1D
from metabench.rl.policy_gradient import (
    advantages,
    linear_baseline,
    reward_to_go,
    surrogate_loss,
)
from metabench.rl.rollout import GaussianPolicy, Trajectories, exploration_noise, rollout


def test_navigation_steps_by_hand():
    env = Navigation2D()
    goal = torch.tensor([[0.3, -0.2]])
    state = env.reset(goal)
    assert state.tolist() == [[0.0, 0.0]]
    state, reward, done = env.step(state, goal, torch.tensor([[0.5, -0.05]]))  # x clipped to 0.1
    assert state[0].tolist() == pytest.approx([0.1, -0.05])
    assert reward.item() == pytest.approx(-math.hypot(0.2, 0.15))
    assert not done.item()
    near = torch.tensor([[0.295, -0.195]])
    state, reward, done = env.step(near, goal, torch.tensor([[0.01, -0.01]]))
    assert state[0].tolist() == pytest.approx([0.305, -0.205])
    assert reward.item() == pytest.approx(-math.hypot(0.005, 0.005), rel=1e-4) and done.item()


def test_velocity_steps_by_hand():
    env = Velocity1D()
    target = torch.tensor([[1.0]])
    state = env.reset(target)
    state, reward, done = env.step(state, target, torch.tensor([[2.0]]))  # force clipped to 1
    assert state[0].tolist() == pytest.approx([0.01, 0.1])  # v = 0.1 (1 - 0), x = 0.1 v
    assert reward.item() == pytest.approx(-(1.0 - 0.1) - 0.05 * 1.0)
    state, reward, _ = env.step(state, target, torch.tensor([[0.0]]))
    velocity = 0.1 + 0.1 * (0.0 - 0.5 * 0.1)
    assert state[0].tolist() == pytest.approx([0.01 + 0.1 * velocity, velocity])
    assert reward.item() == pytest.approx(-(1.0 - velocity)) and not done.item()


def test_tasks_are_drawn_in_range_and_reproducibly():
    for env, low, high in ((Navigation2D(), -0.5, 0.5), (Velocity1D(), 0.0, 2.0)):
        first = env.sample_tasks(500, torch.Generator().manual_seed(3))
        again = env.sample_tasks(500, torch.Generator().manual_seed(3))
        assert torch.equal(first, again) and first.shape == (500, env.task_dim)
        assert first.min() >= low and first.max() <= high
        assert first.max() - first.min() > 0.8 * (high - low)


def test_the_same_task_and_role_give_the_same_noise_and_returns():
    env = Navigation2D()
    tasks = env.sample_tasks(3, torch.Generator().manual_seed(0)).repeat_interleave(2, dim=0)
    support = exploration_noise(env, ["t0", "t1", "t2"], "support", per_task=2)
    assert torch.equal(support, exploration_noise(env, ["t0", "t1", "t2"], "support", per_task=2))
    assert not torch.equal(support, exploration_noise(env, ["t0", "t1", "t2"], "query", per_task=2))
    torch.manual_seed(0)
    policy = GaussianPolicy(env.observation_dim, env.action_dim)
    twin = GaussianPolicy(env.observation_dim, env.action_dim)
    twin.load_state_dict(policy.state_dict())
    first, second = rollout(env, policy, tasks, support), rollout(env, twin, tasks, support)
    assert torch.equal(first.returns, second.returns) and first.returns.shape == (6,)
    assert first.observations.shape == (env.horizon, 6, 2)


class FixedAction(nn.Module):
    """Always the same action, (almost) no noise."""

    def __init__(self, action: list[float]) -> None:
        super().__init__()
        self.action = torch.tensor(action)

    def forward(self, observations: Tensor) -> tuple[Tensor, Tensor]:
        return self.action.expand(observations.shape[0], -1), torch.full_like(self.action, 1e-9)


def test_an_ended_trajectory_stays_put_and_scores_nothing():
    env = Navigation2D()
    tasks = torch.tensor([[0.05, 0.05], [0.5, 0.5]])
    noise = torch.zeros(env.horizon, 2, 2)
    result = rollout(env, FixedAction([0.05, 0.05]), tasks, noise)
    assert result.mask[:, 0].tolist() == [1.0] + [0.0] * (env.horizon - 1)  # arrived at step 1
    assert result.returns[0].item() == pytest.approx(0.0, abs=1e-6)
    assert result.mask[:, 1].sum().item() < env.horizon  # reaches (0.5, 0.5) after 10 steps
    assert result.returns[1].item() == pytest.approx(
        -sum(math.hypot(0.5 - 0.05 * k, 0.5 - 0.05 * k) for k in range(1, 11)), rel=1e-4)


def test_reward_to_go_by_hand():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    full = reward_to_go(rewards, torch.ones(3, 1), gamma=0.5)
    assert full[:, 0].tolist() == pytest.approx([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])
    ended = reward_to_go(torch.tensor([[1.0], [2.0], [0.0]]), torch.tensor([[1.0], [1.0], [0.0]]),
                         gamma=0.5)
    assert ended[:, 0].tolist() == pytest.approx([2.0, 2.0, 0.0])


def test_the_linear_baseline_fits_returns_linear_in_its_features():
    observations = torch.randn(5, 7, 2, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(5, 7)
    returns = 2 * observations[..., 0] - observations[..., 1] ** 2 + 1
    torch.testing.assert_close(linear_baseline(observations, returns, mask), returns,
                               atol=1e-3, rtol=1e-3)


class ConstantMean(nn.Module):
    """A one-parameter Gaussian policy: mean theta, fixed standard deviation."""

    def __init__(self, theta: float, std: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([theta], dtype=torch.float64))
        self.std = torch.tensor([std], dtype=torch.float64)

    def forward(self, observations: Tensor) -> tuple[Tensor, Tensor]:
        return self.theta.expand(*observations.shape[:-1], 1), self.std


def test_the_policy_gradient_estimate_matches_a_hand_computed_gradient():
    theta, std = 0.3, 0.5
    policy = ConstantMean(theta, std)
    actions = torch.tensor([[[0.1], [0.9], [-0.4], [0.6]]], dtype=torch.float64)  # T=1, B=4
    weights = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64)
    trajectories = Trajectories(torch.zeros(1, 4, 1, dtype=torch.float64), actions,
                                torch.zeros(1, 4, dtype=torch.float64),
                                torch.ones(1, 4, dtype=torch.float64), torch.zeros(4, 1))
    surrogate_loss(policy, trajectories, weights).backward()
    # d/dtheta log N(a; theta, std) = (a - theta) / std^2; the loss is minus their weighted mean.
    expected = -sum((a - theta) / std**2 * w for a, w in
                    zip(actions.flatten().tolist(), weights.flatten().tolist(), strict=True)) / 4
    assert policy.theta.grad.item() == pytest.approx(expected)


def test_advantages_are_normalised_over_live_steps():
    env = Navigation2D()
    tasks = env.sample_tasks(4, torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    result = rollout(env, GaussianPolicy(2, 2), tasks, exploration_noise(env, range(4), "s", 1))
    values = advantages(result)
    live = values[result.mask.bool()]
    assert live.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert live.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)

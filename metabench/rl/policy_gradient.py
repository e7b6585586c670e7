"""The policy-gradient estimator of MAML-RL's inner loop (Finn et al. 2017, after Williams
1992 and Duan et al. 2016): log-likelihoods of the taken actions weighted by advantages,
the discounted reward-to-go minus a linear feature baseline fitted on the same batch."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from metabench.rl.rollout import Params, Trajectories, distribution

GAMMA = 0.99  # Finn et al. 2017 (rllab's default discount)
BASELINE_RIDGE = 1e-5


def reward_to_go(rewards: Tensor, mask: Tensor, gamma: float = GAMMA) -> Tensor:
    """Discounted return from each step on, ``[T, B]``; zero after a trajectory ended."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for step in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[step] + gamma * running * mask[step]
        returns[step] = running * mask[step]
    return returns


def baseline_features(observations: Tensor, mask: Tensor) -> Tensor:
    """Duan et al. 2016's linear-baseline features: observation, its square, time, time^2,
    time^3 (time scaled by 100) and a constant, ``[T, B, features]``."""
    steps = observations.shape[0]
    time = torch.arange(steps, dtype=observations.dtype, device=observations.device) / 100.0
    time = time[:, None, None].expand(steps, observations.shape[1], 1)
    ones = torch.ones_like(time)
    features = torch.cat([observations, observations**2, time, time**2, time**3, ones], dim=-1)
    return features * mask[..., None]


def linear_baseline(observations: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """Values ``[T, B]`` of a ridge regression of ``returns`` on the features, fitted to
    this batch (the fit is a constant of the gradient: no graph goes through it)."""
    return _fit(baseline_features(observations.detach(), mask), returns.detach(), mask)


def _fit(features: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    flat = features.reshape(-1, features.shape[-1])
    target = returns.reshape(-1, 1)
    gram = flat.T @ flat
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    coefficients = torch.linalg.solve(gram + BASELINE_RIDGE * eye, flat.T @ target)
    return (flat @ coefficients).reshape(returns.shape) * mask


def advantages(trajectories: Trajectories, gamma: float = GAMMA,
               normalise: bool = True) -> Tensor:
    """Reward-to-go minus the linear baseline ``[T, B]``, centred and scaled over the
    batch's live steps when ``normalise`` (as Finn et al.'s code does)."""
    mask = trajectories.mask
    returns = reward_to_go(trajectories.rewards, mask, gamma)
    values = returns - linear_baseline(trajectories.observations, returns, mask)
    if not normalise:
        return values * mask
    count = mask.sum()
    mean = (values * mask).sum() / count
    std = (((values - mean) ** 2) * mask).sum().div(count).sqrt()
    return (values - mean) / (std + 1e-8) * mask


def log_likelihoods(policy: nn.Module, trajectories: Trajectories,
                    params: Params | None = None) -> Tensor:
    """Log-density of each taken action under the policy ``[T, B]`` (differentiable in the
    policy's weights, or in ``params``)."""
    mean, std = distribution(policy, trajectories.observations, params)
    z = (trajectories.actions - mean) / std
    per_dim = -0.5 * z**2 - std.log() - 0.5 * math.log(2 * math.pi)
    return per_dim.sum(dim=-1)


def surrogate_loss(policy: nn.Module, trajectories: Trajectories, weights: Tensor,
                   params: Params | None = None) -> Tensor:
    """The score-function surrogate: minus the mean over live steps of log-likelihood x
    advantage; its gradient is the policy-gradient estimate."""
    mask = trajectories.mask
    logp = log_likelihoods(policy, trajectories, params)
    return -(logp * weights.detach() * mask).sum() / mask.sum()

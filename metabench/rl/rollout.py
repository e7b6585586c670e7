"""Gaussian policies and seeded rollouts of a batch of trajectories.

The exploration noise of a rollout is drawn before it from generators seeded by the task's
identity and the rollout's role (``support``, ``query``), so two algorithms facing the same
task face the same noise: identical policies give identical trajectories and returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metabench.rl.envs import VectorEnv
from metabench.seeding import derive_seed

Params = Mapping[str, Tensor]


class GaussianPolicy(nn.Module):
    """A diagonal Gaussian over actions: an MLP mean (Finn et al. 2017: two hidden layers of
    100 ReLU units) and a learnt log standard deviation, independent of the observation."""

    def __init__(self, observation_dim: int, action_dim: int, hidden: Sequence[int] = (100, 100),
                 init_std: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = observation_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, action_dim))
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(torch.tensor(init_std).log())))

    def forward(self, observations: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``[..., action_dim]`` and standard deviation ``[action_dim]``."""
        return self.mean(observations), self.log_std.exp()


class BackbonePolicy(nn.Module):
    """A Gaussian policy on a harness backbone (the same initial weights for every
    algorithm of a cell): a linear mean head on its features and a learnt log standard
    deviation (initial standard deviation 1, as Finn et al.'s policies)."""

    def __init__(self, backbone: nn.Module, action_dim: int, init_std: float = 1.0) -> None:
        super().__init__()
        self.backbone = backbone
        features = backbone.out_features
        assert isinstance(features, int), f"backbone.out_features is {features!r}, not an int"
        self.head = nn.Linear(features, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(torch.tensor(init_std).log())))

    def forward(self, observations: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``[..., action_dim]`` and standard deviation ``[action_dim]``."""
        return self.head(self.backbone(observations)), self.log_std.exp()


def distribution(policy: nn.Module, observations: Tensor,
                 params: Params | None = None) -> tuple[Tensor, Tensor]:
    """The policy's mean and standard deviation, with ``params`` (adapted weights) in place
    of its own when given."""
    if params is None:
        result = policy(observations)
    else:
        result = functional_call(policy, dict(params), (observations,))
    mean, std = result
    return mean, std


@dataclass
class Trajectories:
    """A batch of trajectories, time first: ``observations [T, B, obs]``, ``actions
    [T, B, act]``, ``rewards [T, B]``, ``mask [T, B]`` (1 where the step happened, 0 after
    the trajectory ended), and each trajectory's ``tasks`` row ``[B, task_dim]``."""

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    tasks: Tensor

    @property
    def returns(self) -> Tensor:
        """Undiscounted return of each trajectory ``[B]``."""
        return (self.rewards * self.mask).sum(dim=0)


def start_generator(task_id: object, role: str) -> torch.Generator:
    """The generator of a rollout's random initial states, seeded by (task id, role) apart
    from the exploration noise's: the same starts for every algorithm."""
    return torch.Generator().manual_seed(derive_seed("rl-start", task_id, role) % 2**63)


def exploration_noise(env: VectorEnv, task_ids: Sequence[object], role: str, per_task: int,
                      device: torch.device | str = "cpu") -> Tensor:
    """Standard normal noise ``[horizon, tasks x per_task, action_dim]``, each task's block
    drawn from a generator seeded by (task id, role): the same for every algorithm."""
    blocks = []
    for task_id in task_ids:
        generator = torch.Generator().manual_seed(derive_seed("rl-noise", task_id, role) % 2**63)
        blocks.append(torch.randn(env.horizon, per_task, env.action_dim, generator=generator))
    return torch.cat(blocks, dim=1).to(device)


@torch.no_grad()
def rollout(env: VectorEnv, policy: nn.Module, tasks: Tensor, noise: Tensor,
            params: Params | None = None, start: Tensor | None = None) -> Trajectories:
    """Run ``policy`` (with ``params`` when given) on one trajectory per row of ``tasks``
    from the states ``start`` (default: ``env.reset(tasks)``): action = mean + std x noise;
    trajectories that ended stay put and score nothing."""
    states = env.reset(tasks) if start is None else start
    alive = torch.ones(tasks.shape[0], dtype=torch.bool, device=tasks.device)
    observations, actions, rewards, masks = [], [], [], []
    for step in range(env.horizon):
        observation = env.observe(states)
        mean, std = distribution(policy, observation, params)
        action = mean + std * noise[step]
        next_states, reward, done = env.step(states, tasks, action)
        observations.append(observation)
        actions.append(action)
        rewards.append(reward * alive)
        masks.append(alive.to(reward.dtype))
        states = torch.where(alive[:, None], next_states, states)
        alive = alive & ~done
    return Trajectories(torch.stack(observations), torch.stack(actions), torch.stack(rewards),
                        torch.stack(masks), tasks)

"""Environment families for meta-RL, vectorised in torch: a batch of tasks and trajectories
steps as tensors, with no Python loop per environment and nothing to download.

An environment is stateless: ``reset(tasks)`` returns the initial states of a batch (one
row per trajectory, its task's parameters beside it) and ``step(states, tasks, actions)``
the next states, rewards and which trajectories ended. So one object serves any number
of batches at once, and a batch is reproduced from its tasks and actions alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metabench.data.vector_env import VectorEnv as VectorEnv  # the protocol, at the data sets' level


class Navigation2D:
    """Finn et al. 2017, section 5.3 (after cbfinn/maml_rl ``point_env_randgoal.py``): a
    point agent starts at the origin; the goal is uniform in [-0.5, 0.5]^2; an action is a
    velocity clipped to [-0.1, 0.1] per coordinate; the reward is minus the distance to the
    goal after the move; a trajectory ends when both coordinates are within 0.01 of the
    goal, or at the horizon of 100 steps. (The paper's text says "squared distance"; its
    code, and the reimplementations, use the distance.)

    ``normalized_actions``: the policy acts in [-1, 1], scaled to the velocity bound, as
    rllab's ``normalize`` wrapper around the authors' environment does (their step sizes and
    exploration noise are in those units); otherwise the action is the velocity itself."""

    name = "navigation2d"
    observation_dim = 2
    action_dim = 2
    task_dim = 2
    horizon = 100
    action_bound = 0.1
    goal_bound = 0.5
    arrive_within = 0.01

    def __init__(self, normalized_actions: bool = False) -> None:
        self.normalized_actions = normalized_actions

    def sample_tasks(self, count: int, generator: torch.Generator) -> Tensor:
        """Goals uniform in [-0.5, 0.5]^2."""
        return (torch.rand(count, 2, generator=generator) * 2 - 1) * self.goal_bound

    def reset(self, tasks: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Every trajectory starts at the origin (``generator`` is not used)."""
        return torch.zeros(tasks.shape[0], 2, dtype=tasks.dtype, device=tasks.device)

    def observe(self, states: Tensor) -> Tensor:
        """The position."""
        return states

    def step(self, states: Tensor, tasks: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Move by the clipped action; reward minus the distance to the goal."""
        if self.normalized_actions:
            actions = actions * self.action_bound
        moved = states + actions.clamp(-self.action_bound, self.action_bound)
        offset = moved - tasks
        reward = -offset.norm(dim=-1)
        done = (offset.abs() < self.arrive_within).all(dim=-1)
        return moved, reward, done


class Velocity1D:
    """A download-free stand-in for the half-cheetah velocity tasks (Finn et al. 2017,
    section 5.3): a unit point mass on a line with friction must run at a target velocity
    drawn uniformly from [0, 2] (half-cheetah's range). The action is a force clipped to
    [-1, 1]; each step of dt = 0.1 sets ``v <- v + dt (force - friction v)`` and
    ``x <- x + dt v``. The reward is ``-|v - target| - 0.05 force^2``: half-cheetah's
    velocity term and a control cost of its weight (0.5 x 0.1). Horizon 100 steps. The
    observation is (position, velocity): the target is not seen, so it must be inferred
    from rewards, as in the MuJoCo task."""

    name = "velocity1d"
    observation_dim = 2
    action_dim = 1
    task_dim = 1
    horizon = 100
    action_bound = 1.0
    dt = 0.1
    friction = 0.5
    control_cost = 0.05
    max_target = 2.0

    def sample_tasks(self, count: int, generator: torch.Generator) -> Tensor:
        """Target velocities uniform in [0, 2]."""
        return torch.rand(count, 1, generator=generator) * self.max_target

    def reset(self, tasks: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """At rest at the origin (``generator`` is not used)."""
        return torch.zeros(tasks.shape[0], 2, dtype=tasks.dtype, device=tasks.device)

    def observe(self, states: Tensor) -> Tensor:
        """Position and velocity."""
        return states

    def step(self, states: Tensor, tasks: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One Euler step of the damped point mass; never ends before the horizon."""
        force = actions[:, 0].clamp(-self.action_bound, self.action_bound)
        velocity = states[:, 1] + self.dt * (force - self.friction * states[:, 1])
        position = states[:, 0] + self.dt * velocity
        reward = -(velocity - tasks[:, 0]).abs() - self.control_cost * force**2
        done = torch.zeros_like(reward, dtype=torch.bool)
        return torch.stack([position, velocity], dim=-1), reward, done


ENVIRONMENTS: dict[str, type] = {"navigation2d": Navigation2D, "velocity1d": Velocity1D}

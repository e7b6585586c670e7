"""The protocol of a vectorised environment family: what an rl data set wraps. It lives with
the data sets (below metabench.rl, which implements it), so data/ never imports rl/."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class VectorEnv(Protocol):
    """A family of tasks: what a policy sees and does, and how a batch steps."""

    name: str
    observation_dim: int
    action_dim: int
    task_dim: int
    horizon: int
    action_bound: float

    def sample_tasks(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` task parameter rows ``[count, task_dim]`` drawn from the family."""

    def reset(self, tasks: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Initial states ``[batch, state_dim]`` of trajectories on ``tasks`` ``[batch, task_dim]``;
        a family with random initial states draws them from ``generator`` (seeded by the
        task's identity and the rollout's role), or starts deterministically without one."""

    def observe(self, states: Tensor) -> Tensor:
        """What the policy sees of ``states``: ``[batch, observation_dim]``."""

    def step(self, states: Tensor, tasks: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Next states, rewards ``[batch]`` and done flags ``[batch]`` after ``actions``."""

"""The meta-RL task families as data sets of task type ``rl``, registered through the same
hook as any plugin: an episode is one task (its parameters), drawn from a generator seeded by
the episode's identity, so episode ``i`` of a split is the same task everywhere."""

from __future__ import annotations

from metabench.data.base import RLDataset
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterDataset
from metabench.protocol import RL
from metabench.rl.envs import Navigation2D, Velocity1D


def navigation2d(normalized_actions: bool = False) -> RLDataset:
    """2D navigation to a goal uniform in [-0.5, 0.5]^2 (Finn et al. 2017, section 5.3);
    ``normalized_actions``: actions in [-1, 1] scaled to the velocity bound (rllab's
    ``normalize``, as the authors' code)."""
    source = "generated (Finn et al. 2017, section 5.3" + (
        "; actions normalised as rllab's normalize)" if normalized_actions else ")")
    return RLDataset(Navigation2D(normalized_actions), source)


def velocity1d() -> RLDataset:
    """A point mass to run at a target velocity in [0, 2] (a half-cheetah velocity stand-in)."""
    return RLDataset(Velocity1D(), "generated (stand-in for half-cheetah velocity, Finn et al. 2017)")


@hookimpl
def register_datasets(register: RegisterDataset) -> None:
    register("navigation2d", navigation2d, task_types={RL},
             description="2D point navigation to a goal in [-0.5,0.5]^2, horizon 100 (Finn et al. 2017)")
    register("velocity1d", velocity1d, task_types={RL},
             description="1D point mass to run at a target velocity in [0,2], horizon 100 "
                         "(half-cheetah velocity stand-in)")

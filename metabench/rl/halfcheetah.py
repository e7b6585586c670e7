"""Finn et al. 2017's half-cheetah tasks (section 5.3) on Gymnasium's HalfCheetah-v5 model,
stepped by MuJoCo's batched ``mujoco.rollout`` (needs the ``mujoco`` extra).

The environment is stateless like the torch ones (:mod:`metabench.rl.envs`): a state row is
MuJoCo's full physics state ``[time, qpos (9), qvel (9)]`` in float64; ``step`` rolls every
row forward ``frame_skip`` physics steps from its own state, with a zero solver warm start,
so a row's trajectory does not depend on the other rows of its batch. (One MjData per
environment stepped in a Python loop gives the same states; ``benchmarks/rl.py`` measures
both, and Gymnasium's vector API.)

Definitions follow Gymnasium's HalfCheetah-v5: frame skip 5 of the model's 0.01 s time step (dt = 0.05 s), the
observation ``qpos[1:]`` and ``qvel`` (17 numbers), reset noise ``qpos`` uniform in
±0.1 and ``qvel`` normal with standard deviation 0.1, the velocity ``(x after - x before) /
dt`` of the root. The rewards are Finn et al.'s (cbfinn/maml_rl,
``rllab/envs/mujoco/half_cheetah_env_rand.py`` and ``half_cheetah_env_rand_direc.py``):
the control cost is ``1e-1 * 0.5 * sum(a^2)`` of the action clipped to [-1, 1].
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mujoco
import numpy as np
import torch
from mujoco import rollout as mujoco_rollout
from torch import Tensor

CONTROL_COST = 1e-1 * 0.5  # Finn et al.'s ctrl_cost = 1e-1 * 0.5 * sum(a^2)
MODEL_FILE = "envs/mujoco/assets/half_cheetah.xml"  # inside the gymnasium package


def model_path() -> str:
    """Gymnasium's half-cheetah model file (found without importing its mujoco module)."""
    return str(importlib.resources.files("gymnasium").joinpath(MODEL_FILE))


@contextmanager
def quiet_mujoco() -> Iterator[None]:
    """Silence MuJoCo's warnings: compiling the model file warns that ``settotalmass`` is
    deprecated (it still applies: the total mass is 14, as in rllab's file)."""
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda message: None)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def load_model() -> mujoco.MjModel:
    """The compiled model (Gymnasium's file)."""
    with quiet_mujoco():
        return mujoco.MjModel.from_xml_path(model_path())


class HalfCheetah:
    """The half-cheetah body and physics shared by the velocity and direction tasks."""

    name = "halfcheetah"
    observation_dim = 17
    action_dim = 6
    task_dim = 1
    horizon = 200  # Finn et al.'s max_path_length (maml_examples/cluster_maml_trpo_cheetah.py)
    action_bound = 1.0
    frame_skip = 5  # Gymnasium HalfCheetah-v5 (rllab's model: 1)
    reset_noise = 0.1  # Gymnasium HalfCheetah-v5's reset_noise_scale

    def __init__(self) -> None:
        self._mujoco: tuple[mujoco.MjModel, mujoco.MjData, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (for other processes): the compiled model is rebuilt where used."""
        return {**self.__dict__, "_mujoco": None}

    def physics(self) -> tuple[mujoco.MjModel, mujoco.MjData, Any]:
        """The model, a scratch ``MjData`` and a single-threaded rollout, built once."""
        if self._mujoco is None:
            model = load_model()
            self._mujoco = (model, mujoco.MjData(model), mujoco_rollout.Rollout(nthread=0))
        return self._mujoco

    @property
    def dt(self) -> float:
        """Seconds of simulated time per step."""
        return float(self.physics()[0].opt.timestep) * self.frame_skip

    def reset(self, tasks: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The model's initial state, perturbed as Gymnasium does when ``generator`` is given
        (``qpos`` + uniform(±0.1), ``qvel`` + 0.1 N(0, 1)); float64 ``[batch, 19]``."""
        model = self.physics()[0]
        batch = tasks.shape[0]
        qpos = torch.as_tensor(model.qpos0, dtype=torch.float64).expand(batch, -1).clone()
        qvel = torch.zeros(batch, model.nv, dtype=torch.float64)
        if generator is not None:
            noise = self.reset_noise
            qpos += (torch.rand(batch, model.nq, generator=generator, dtype=torch.float64) * 2 - 1) * noise
            qvel += noise * torch.randn(batch, model.nv, generator=generator, dtype=torch.float64)
        time = torch.zeros(batch, 1, dtype=torch.float64)
        return torch.cat([time, qpos, qvel], dim=1).to(tasks.device)

    def observe(self, states: Tensor) -> Tensor:
        """``qpos[1:]`` and ``qvel`` (the root's x is left out, as Gymnasium's default)."""
        return states[:, 2:].to(torch.get_default_dtype())

    def velocity(self, states: Tensor, next_states: Tensor) -> Tensor:
        """The root's mean x-velocity over the step: ``(x after - x before) / dt``."""
        return (next_states[:, 1] - states[:, 1]) / self.dt

    def control_cost(self, actions: Tensor) -> Tensor:
        """Finn et al.'s ``0.05 * sum(a^2)`` of the action clipped to [-1, 1]."""
        clipped = actions.to(torch.float64).clamp(-self.action_bound, self.action_bound)
        return CONTROL_COST * (clipped**2).sum(dim=-1)

    def simulate(self, states: Tensor, actions: Tensor) -> Tensor:
        """Each row ``frame_skip`` physics steps on from its state under its action, in one
        ``mujoco.rollout`` call (outputs preallocated, so its Python checks are skipped)."""
        model, data, runner = self.physics()
        initial = np.ascontiguousarray(states.detach().cpu().numpy(), dtype=np.float64)
        batch = initial.shape[0]
        control = np.ascontiguousarray(np.broadcast_to(
            actions.detach().cpu().numpy().astype(np.float64)[:, None, :],
            (batch, self.frame_skip, model.nu)))
        trajectory = np.empty((batch, self.frame_skip, initial.shape[1]))
        runner.rollout([model] * batch, [data], initial, control, nstep=self.frame_skip,
                       initial_warmstart=np.zeros((batch, model.nv)), state=trajectory,
                       sensordata=np.empty((batch, self.frame_skip, model.nsensordata)),
                       skip_checks=True)
        return torch.from_numpy(trajectory[:, -1].copy()).to(states.device)

    def task_reward(self, velocity: Tensor, tasks: Tensor) -> Tensor:
        """The task's reward for the step's velocity, before the control cost."""
        raise NotImplementedError

    def step(self, states: Tensor, tasks: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Simulate one step; the task's reward minus the control cost; never ends early."""
        next_states = self.simulate(states, actions)
        velocity = self.velocity(states, next_states)
        reward = self.task_reward(velocity, tasks[:, 0].to(torch.float64)) - self.control_cost(actions)
        done = torch.zeros(states.shape[0], dtype=torch.bool, device=states.device)
        return next_states, reward.to(tasks.dtype), done


class HalfCheetahVel(HalfCheetah):
    """Run at a goal velocity uniform in [0, 2]: reward ``-|v - goal| - 0.05 |a|^2``."""

    name = "halfcheetah-vel"
    max_goal = 2.0

    def sample_tasks(self, count: int, generator: torch.Generator) -> Tensor:
        """Goal velocities uniform in [0, 2] (Finn et al.'s ``sample_goals``)."""
        return torch.rand(count, 1, generator=generator) * self.max_goal

    def task_reward(self, velocity: Tensor, tasks: Tensor) -> Tensor:
        """Minus the absolute velocity error."""
        return -(velocity - tasks).abs()


class HalfCheetahDir(HalfCheetah):
    """Run forward (+1) or backward (-1), each with probability 1/2: reward
    ``direction * v - 0.05 |a|^2``."""

    name = "halfcheetah-dir"

    def sample_tasks(self, count: int, generator: torch.Generator) -> Tensor:
        """Directions -1 or +1 (Finn et al. draw u in [0, 2] and go backward when u < 1)."""
        backward = torch.rand(count, 1, generator=generator) < 0.5
        return torch.where(backward, -1.0, 1.0)

    def task_reward(self, velocity: Tensor, tasks: Tensor) -> Tensor:
        """The velocity along the task's direction."""
        return tasks * velocity

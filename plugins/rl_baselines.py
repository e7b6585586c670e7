"""The two baselines every meta-RL paper reports (Finn et al. 2017, figure 4), for the ``rl``
task type: ``pretrained``, one policy trained by policy gradient on all training tasks and
fine-tuned on each test task, and ``random``, the shared random initialisation fine-tuned.
Both fine-tune as the meta-learners adapt: ``inner_lr`` policy-gradient steps on the
support trajectories the harness collects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import metabench
from metabench.rl.maml import adapted_weights
from metabench.rl.policy_gradient import advantages, surrogate_loss
from metabench.rl.protocol import task_rollout
from metabench.rl.rollout import BackbonePolicy, Trajectories
from metabench_plugins.maml_rl import TRAIN_SUPPORT, rl_environment


@dataclass(frozen=True)
class PretrainedConfig:
    """``lr``: Adam on the multi-task policy-gradient surrogate; ``meta_batch_size`` tasks a
    step; ``inner_lr`` / ``test_steps``: the fine-tuning steps (MAML-RL's inner step, 0.1)."""

    lr: float = 1e-2
    meta_batch_size: int = 4
    inner_lr: float = 0.1
    test_steps: int = 1
    train_shots: int = 0  # trajectories per training task (0: the setting's shots)
    curve_inner_lr: float | None = None  # adaptation steps after the first (None: inner_lr)


@dataclass(frozen=True)
class RandomConfig:
    """``inner_lr`` / ``test_steps``: the fine-tuning steps from the random initialisation."""

    inner_lr: float = 0.1
    test_steps: int = 1
    curve_inner_lr: float | None = None  # adaptation steps after the first (None: inner_lr)


class _FineTuned:
    """A Gaussian policy on the cell's backbone, fine-tuned per task by policy gradient."""

    name = "rl baseline"

    def __init__(self, setup: metabench.AlgorithmSetup, inner_lr: float, steps: int,
                 curve_inner_lr: float | None = None) -> None:
        self.env = rl_environment(setup, self.name)
        self.spec = setup.spec
        self.policy = BackbonePolicy(setup.backbone, self.env.action_dim).to(setup.device)
        self.inner_lr, self.steps, self.curve_inner_lr = inner_lr, steps, curve_inner_lr

    def adapt_policy(self, support: Trajectories,
                     params: dict[str, Tensor] | None = None) -> dict[str, Tensor] | None:
        """``steps`` policy-gradient steps of ``inner_lr`` on the support trajectories, from
        the policy's weights or from ``params`` (an earlier adaptation's)."""
        if self.steps == 0:
            return params
        later = self.curve_inner_lr
        lr = self.inner_lr if params is None or later is None else later
        return adapted_weights(self.policy, support, lr, self.steps, params)

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Not used: rl tasks are scored through ``adapt_policy`` by the harness."""
        raise metabench.MetabenchError(f"{self.name}: rl tasks are scored by the harness")


class Pretrained(_FineTuned):
    """Multi-task policy gradient over the training tasks, then fine-tuning."""

    name = "pretrained"

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: PretrainedConfig) -> None:
        super().__init__(setup, hparams.inner_lr, hparams.test_steps, hparams.curve_inner_lr)
        self.episodes_per_step = hparams.meta_batch_size
        self.train_shots = hparams.train_shots or self.spec.shots
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=hparams.lr)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """One Adam step on the surrogate of every task's trajectories."""
        rollouts = [task_rollout(self.env, self.policy, episode, self.train_shots, TRAIN_SUPPORT)
                    for episode in batch]
        loss = torch.stack([surrogate_loss(self.policy, r, advantages(r)) for r in rollouts]).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        returns = torch.stack([r.returns.mean() for r in rollouts]).mean()
        return {"loss": float(loss.detach()), "return": float(returns)}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])


class Random(_FineTuned):
    """The shared random initialisation, never updated: its training steps roll out one
    task and discard it (the budget is spent as for every algorithm)."""

    name = "random"

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: RandomConfig) -> None:
        super().__init__(setup, hparams.inner_lr, hparams.test_steps, hparams.curve_inner_lr)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """Roll out, learn nothing; the loss is the negative mean return seen."""
        returns = torch.stack([task_rollout(self.env, self.policy, episode, self.spec.shots,
                                            TRAIN_SUPPORT).returns.mean() for episode in batch])
        return {"loss": float(-returns.mean()), "return": float(returns.mean())}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    rl = {"rl"}
    register("pretrained", Pretrained, task_types=rl, defaults=PretrainedConfig(),
             search_space={"lr": metabench.LogUniform(1e-3, 1e-1),
                           "inner_lr": metabench.LogUniform(0.01, 1.0)},
             description="policy trained on all training tasks, fine-tuned per task (rl baseline)")
    register("random", Random, task_types=rl, defaults=RandomConfig(),
             search_space={"inner_lr": metabench.LogUniform(0.01, 1.0)},
             description="the random initial policy, fine-tuned per task (rl baseline)")

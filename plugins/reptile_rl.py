"""Reptile for the ``rl`` task type: per task, ``inner_steps`` policy-gradient steps of
``rl_inner_lr``, each on fresh trajectories of the adapted policy; then the initial weights
move ``outer_lr`` of the way to the mean of the adapted ones (Nichol et al. 2018's update on
policy-gradient inner loops). At test it adapts as MAML-RL does: one policy-gradient step
of ``rl_inner_lr`` on the harness's support trajectories."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import metabench
from metabench.rl.maml import adapt
from metabench.rl.protocol import task_rollout
from metabench.rl.rollout import BackbonePolicy, Trajectories
from metabench_plugins.maml_rl import rl_environment


class ReptileRL:
    """First-order meta-RL by interpolating towards task-adapted policies."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: Any) -> None:
        self.env = rl_environment(setup, "reptile")
        self.spec, self.hparams = setup.spec, hparams
        self.policy = BackbonePolicy(setup.backbone, self.env.action_dim).to(setup.device)
        self.episodes_per_step = hparams.meta_batch_size

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """Adapt to each task with fresh rollouts per inner step, then interpolate."""
        initial = {name: p.detach().clone() for name, p in self.policy.named_parameters()}
        total = {name: torch.zeros_like(p) for name, p in initial.items()}
        returns = []
        for episode in batch:
            weights: dict[str, Tensor] = dict(initial)
            for step in range(self.hparams.inner_steps):
                trajectories = task_rollout(self.env, self.policy, episode, self.spec.shots,
                                            f"train-{step}", weights)
                returns.append(trajectories.returns.mean())
                weights = self._step(trajectories, weights)
            for name in total:
                total[name] += weights[name]
        with torch.no_grad():
            for name, parameter in self.policy.named_parameters():
                target = total[name] / len(batch)
                parameter.add_(self.hparams.outer_lr * (target - parameter))
        mean_return = float(torch.stack(returns).mean())
        return {"loss": -mean_return, "return": mean_return}

    def _step(self, trajectories: Trajectories, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        with torch.enable_grad():
            start = {name: value.detach().requires_grad_() for name, value in weights.items()}
            adapted = adapt(self.policy, trajectories, self.hparams.rl_inner_lr, 1,
                            first_order=True, params=start)
        return {name: value.detach() for name, value in adapted.items()}

    def adapt_policy(self, support: Trajectories,
                     params: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """One policy-gradient step of ``rl_inner_lr`` on the support trajectories, from the
        policy's weights or from ``params`` (an earlier adaptation's)."""
        start = params if params is not None else dict(self.policy.named_parameters())
        return self._step(support, {n: p.detach() for n, p in start.items()})

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Not used: rl tasks are scored through ``adapt_policy`` by the harness."""
        raise metabench.MetabenchError("reptile: rl tasks are scored by the harness")

    def protocol_details(self) -> dict[str, Any]:
        """The inner loop of rl Reptile."""
        return {"inner": f"{self.hparams.inner_steps} policy-gradient steps, fresh rollouts"}

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])

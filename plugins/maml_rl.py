"""MAML and first-order MAML for the ``rl`` task type (Finn et al. 2017, section 5.3).

The inner loop is a policy-gradient step (REINFORCE with reward-to-go and a linear feature
baseline) on the support trajectories; the outer loss is the query trajectories'
policy-gradient surrogate under the adapted weights, differentiated through the inner step
(second order) or not (first order). Finn et al. step the outer loop with TRPO; here it is
Adam (as first-order and PPO-style reimplementations do), which the docs say.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import metabench
from metabench.rl.maml import adapt, adapted_weights, query_loss
from metabench.rl.protocol import task_rollout
from metabench.rl.rollout import BackbonePolicy, Trajectories
from metabench_plugins.maml_config import MAMLConfig, check_config, resolve_inner_lr

TRAIN_SUPPORT, TRAIN_QUERY = "train-support", "train-query"


def rl_environment(setup: metabench.AlgorithmSetup, owner: str) -> Any:
    """The cell's environment, or a one-line error when the harness gave none."""
    if setup.environment is None:
        raise metabench.MetabenchError(f"{owner}: an rl cell needs setup.environment")
    return setup.environment


class MAMLRL:
    """Meta-learn a policy initialisation that one policy-gradient step adapts to a task."""

    names = ("maml", "fomaml")

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: MAMLConfig) -> None:
        self.owner = self.names[hparams.first_order]
        check_config(hparams, self.owner)
        self.env = rl_environment(setup, self.owner)
        self.spec, self.hparams = setup.spec, hparams
        self.policy = BackbonePolicy(setup.backbone, self.env.action_dim).to(setup.device)
        self.inner_lr = resolve_inner_lr(hparams, setup.task_type)
        self.episodes_per_step = hparams.meta_batch_size
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=hparams.meta_lr)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """Collect each task's support, adapt once (with the graph for second order), collect
        its query with the adapted policy, then one outer step on the query surrogates."""
        hp = self.hparams
        shots, queries = hp.train_shots or self.spec.shots, hp.train_queries or self.spec.queries
        losses, returns = [], []
        for episode in batch:
            support = task_rollout(self.env, self.policy, episode, shots, TRAIN_SUPPORT)
            adapted = adapt(self.policy, support, self.inner_lr, hp.train_steps, hp.first_order)
            query = task_rollout(self.env, self.policy, episode, queries, TRAIN_QUERY,
                                 {name: value.detach() for name, value in adapted.items()})
            losses.append(query_loss(self.policy, adapted, query, hp.first_order))
            returns.append(query.returns.mean())
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), "return": float(torch.stack(returns).mean())}

    def adapt_policy(self, support: Trajectories,
                     params: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The weights after ``train_steps`` policy-gradient steps on ``support``, from the
        policy's own or from ``params`` (an earlier adaptation's, for the adaptation curve)."""
        later = self.hparams.curve_inner_lr
        lr = self.inner_lr if params is None or later is None else later
        return adapted_weights(self.policy, support, lr, self.hparams.train_steps, params)

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Not used: rl tasks are scored through ``adapt_policy`` by the harness."""
        raise metabench.MetabenchError(f"{self.owner}: rl tasks are scored by the harness's "
                                       "rollouts, not predict()")

    def protocol_details(self) -> dict[str, Any]:
        """The outer optimiser and the inner step count (the paper's outer loop is TRPO)."""
        details: dict[str, Any] = {"outer": "Adam (paper: TRPO)",
                                   "inner steps": self.hparams.train_steps}
        if self.hparams.train_shots or self.hparams.train_queries:
            details["train trajectories"] = (f"{self.hparams.train_shots or self.spec.shots}+"
                                             f"{self.hparams.train_queries or self.spec.queries}")
        return details

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])

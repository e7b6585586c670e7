"""Reptile (Nichol, Achiam and Schulman 2018): move the initialisation towards adapted weights.

For each task of a meta-batch, a working copy of the weights takes ``inner_steps`` SGD or
Adam steps on minibatches of the support set; the initialisation then moves by
``theta + epsilon * (mean(phi) - theta)``, with ``epsilon`` annealed linearly. Testing
fine-tunes a copy on the support set the same way and predicts the query set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

import metabench
from metabench.algorithm_helpers import (
    batch_norm_layers,
    batch_statistics_protocol,
    build_model,
    check_non_negative,
    check_positive,
    per_query_outputs,
    task_loss,
    task_metrics,
    usable_for_autograd,
    use_channels_last,
)

INNER_OPTIMIZERS = ("adam", "sgd")
GENERATOR_SALT = 2


@dataclass(frozen=True)
class ReptileConfig:
    """Hyperparameters; defaults follow Nichol et al. 2018, Table 3 (Omniglot, docs/algorithms.md).

    The inner Adam uses beta1 = 0 and keeps its moments from task to task during training,
    as the authors' code does. ``train_shots`` = 0 trains with the test shots.
    ``outer_lr`` falls linearly to ``outer_lr_final`` over the run's training budget
    (``anneal_steps`` = 0, the paper's schedule over its whole run) or over ``anneal_steps``
    outer steps. ``channels_last`` stores convolution weights channels-last (faster on CPU;
    same results to float rounding). ``transductive`` puts the query set through the
    fine-tuned network in one pass (batch norm normalises it with its own statistics); false
    puts each query through with the support set alone (the authors' default, without
    ``--transductive``).
    """

    inner_optimizer: str = "adam"
    inner_lr: float = 1e-3
    inner_steps: int = 5
    inner_batch: int = 10
    train_shots: int = 10
    test_steps: int = 10
    test_batch: int = 5
    outer_lr: float = 1.0
    outer_lr_final: float = 0.0
    anneal_steps: int = 0
    meta_batch_size: int = 5
    channels_last: bool = True
    transductive: bool = True
    rl_inner_lr: float = 0.1  # rl tasks: the policy-gradient step (MAML-RL's, Finn et al.)


class Reptile:
    """First-order meta-learning by interpolating towards task-adapted weights."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: ReptileConfig) -> None:
        check_hparams(hparams)
        self.hparams = hparams
        self.episodes_per_step = hparams.meta_batch_size
        self.task_type = setup.task_type
        self.model = use_channels_last(build_model(setup).train(), hparams.channels_last)
        self.learner = copy.deepcopy(self.model)
        self.inner_optimizer = self._make_optimizer()
        self.generator = setup.seeded_generator(GENERATOR_SALT)
        self.outer_steps = 0
        self.budget_progress = 0.0
        # Without batch norm no example's output depends on another's: one pass is the same.
        self._per_query = not hparams.transductive and bool(batch_norm_layers(self.model))

    def set_budget_progress(self, fraction: float) -> None:
        """The share of the training budget spent, from the harness before each outer step."""
        self.budget_progress = fraction

    def train_task_spec(self, spec: metabench.TaskSpec) -> metabench.TaskSpec:
        """Train on ``train_shots`` support examples per class; the query set is unused."""
        return replace(spec, shots=self.hparams.train_shots or spec.shots, queries=1)

    def epsilon(self) -> float:
        """The outer step size now: linear annealing over the budget or ``anneal_steps``."""
        hp = self.hparams
        if hp.anneal_steps:
            done = min(1.0, self.outer_steps / hp.anneal_steps)
        else:
            done = min(1.0, max(0.0, self.budget_progress))
        return (1.0 - done) * hp.outer_lr + done * hp.outer_lr_final

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """Adapt a copy to each task, then interpolate the initialisation towards their mean."""
        theta: list[Tensor] = list(self.model.parameters())
        total = [torch.zeros_like(p) for p in theta]
        metrics: list[dict[str, float]] = []
        for episode in batch:
            phi, last = self._fine_tune(episode, self.inner_optimizer, self.generator, train=True)
            torch._foreach_add_(total, phi)
            metrics.append(last)
        epsilon = self.epsilon()
        with torch.no_grad():
            torch._foreach_lerp_(theta, torch._foreach_div(total, len(batch)), epsilon)
        self.outer_steps += 1
        summary = {key: sum(m[key] for m in metrics) / len(metrics) for key in metrics[0]}
        return {**summary, "epsilon": epsilon}

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Fine-tune a copy on the support set (``test_steps`` steps), predict the query set."""
        optimizer = self._make_optimizer()
        optimizer.load_state_dict(self.inner_optimizer.state_dict())
        generator = torch.Generator().manual_seed(_identity_seed(episode.identity))
        self._fine_tune(episode, optimizer, generator, train=False)
        with torch.inference_mode():
            if self._per_query:
                return per_query_outputs(self.learner, episode.support_x, episode.query_x)
            return self.learner(episode.query_x)

    def protocol_details(self) -> dict[str, Any]:
        """Test-time protocol facts for a leaderboard: how batch norm treats the query set."""
        return batch_statistics_protocol(self.model, self.hparams.transductive)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "inner_optimizer": self.inner_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "outer_steps": self.outer_steps,
            "budget_progress": self.budget_progress,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.inner_optimizer.load_state_dict(state["inner_optimizer"])
        self.generator.set_state(state["generator"])
        self.outer_steps = int(state["outer_steps"])
        self.budget_progress = float(state.get("budget_progress", 0.0))

    def _make_optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        params = self.learner.parameters()
        if hp.inner_optimizer == "sgd":
            return torch.optim.SGD(params, lr=hp.inner_lr)
        return torch.optim.Adam(params, lr=hp.inner_lr, betas=(0.0, 0.999))

    def _fine_tune(
        self,
        episode: metabench.Episode,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        train: bool,
    ) -> tuple[list[Tensor], dict[str, float]]:
        """Start the learner from theta and take the inner steps; its weights and last metrics."""
        hp = self.hparams
        steps, size = (hp.inner_steps, hp.inner_batch) if train else (hp.test_steps, hp.test_batch)
        output: Tensor | None = None
        target: Tensor | None = None
        with torch.inference_mode(False), torch.enable_grad():
            x, y = usable_for_autograd(episode.support_x), usable_for_autograd(episode.support_y)
            with torch.no_grad():
                theta: list[Tensor] = list(self.model.parameters())
                torch._foreach_copy_(list(self.learner.parameters()), theta)
            for rows in minibatches(len(x), size, steps, generator):
                output = self.learner(x if rows is None else x[rows.to(x.device)])
                target = y if rows is None else y[rows.to(y.device)]
                loss = task_loss(self.task_type, output, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        metrics = {} if output is None or target is None else task_metrics(
            self.task_type, output.detach(), target)
        return [p.detach() for p in self.learner.parameters()], metrics


def minibatches(
    count: int, size: int, steps: int, generator: torch.Generator
) -> list[Tensor | None]:
    """Row indices of ``steps`` minibatches of ``size`` from ``count`` examples.

    As in the authors' code, examples are drawn from successive random permutations, so a
    minibatch may span two of them; ``None`` stands for "all rows" when one minibatch
    holds the whole set.
    """
    if size >= count:
        return [None] * steps
    needed = size * steps
    order = torch.cat(
        [torch.randperm(count, generator=generator) for _ in range(-(-needed // count))]
    )
    return list(order[:needed].view(steps, size))


def check_hparams(hp: ReptileConfig) -> None:
    """Fail with one line on a hyperparameter outside its range."""
    if hp.inner_optimizer not in INNER_OPTIMIZERS:
        raise metabench.MetabenchError(
            f"reptile.inner_optimizer={hp.inner_optimizer!r} is not known; "
            f"expected one of {', '.join(INNER_OPTIMIZERS)}"
        )
    check_positive(
        "reptile", inner_lr=hp.inner_lr, inner_steps=hp.inner_steps, inner_batch=hp.inner_batch,
        test_batch=hp.test_batch,
        meta_batch_size=hp.meta_batch_size,
    )
    check_non_negative(
        "reptile", test_steps=hp.test_steps, anneal_steps=hp.anneal_steps,
        train_shots=hp.train_shots, outer_lr=hp.outer_lr, outer_lr_final=hp.outer_lr_final,
    )


def _identity_seed(identity: metabench.EpisodeId) -> int:
    """A stable seed per test episode, so predictions do not depend on evaluation order."""
    return metabench.derive_seed(repr(identity))


def make_reptile(setup: metabench.AlgorithmSetup, hparams: ReptileConfig) -> Any:
    """Reptile for the cell's task type: :class:`Reptile`, or ``ReptileRL`` for rl tasks."""
    if setup.task_type == "rl":
        from metabench_plugins.reptile_rl import ReptileRL

        return ReptileRL(setup, hparams)
    return Reptile(setup, hparams)


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    # Nichol et al. 2018, Table 3: inner Adam 1e-3 (a decade either side), outer step 1.0
    # annealed to 0 (tuned in (0.1, 1]), 5 inner steps on Omniglot and 8 on mini-ImageNet.
    space: metabench.SearchSpace = {"inner_lr": metabench.LogUniform(1e-4, 1e-2),
             "outer_lr": metabench.Uniform(0.1, 1.0),
             "inner_steps": metabench.IntUniform(1, 10)}
    register("reptile", make_reptile, task_types={"classification", "regression", "rl"},
             defaults=ReptileConfig(), search_space=space,
             description="Reptile: theta += epsilon (phi - theta), Adam inner loop (Nichol et al. 2018)")

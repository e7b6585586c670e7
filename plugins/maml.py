"""MAML and first-order MAML (Finn et al. 2017) with ``torch.func.functional_call``.

One implementation, a ``first_order`` flag. The adapted ("fast") weights are a dict of
tensors passed to ``functional_call``, so no module is ever cloned; at test time the
inner steps build no second-order graph and the query pass runs under inference mode.

Subclasses reuse the inner loop and meta-gradient through four hooks: ``adapted`` (which
meta-parameters the inner loop adapts), ``_features`` (what is computed once per episode
before adapting), ``_forward`` (the adapted part) and ``_inner_update`` (one inner step);
ANIL (``anil.py``) and Meta-SGD (``metasgd.py``) are written this way.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

import metabench
from metabench.algorithm_helpers import (
    batch_norm_layers,
    batch_statistics_protocol,
    build_model,
    channels_last_activations,
    contiguous_activations,
    per_query_outputs,
    task_loss,
    task_metrics,
    usable_for_autograd,
)
from metabench_plugins.maml_config import (
    MAMLConfig,
    check_config,
    resolve_inner_lr,
)
from metabench_plugins.maml_rl import MAMLRL

Params = dict[str, Tensor]

# Most images (support and query sets together) that ``predict_batch`` adapts in one vmapped
# pass: bounds its activation memory (one activation map of Conv4's first block is 0.2 MB
# per 28 x 28 image, 0.9 MB per 84 x 84 image with 32 filters; a few are alive at once).
BATCH_IMAGES = 512

# What `metabench tune` varies (docs/algorithms.md). inner_lr: the papers' values span
# 0.01 (Finn et al. 2017, mini-ImageNet and sinusoid) to 0.4 (Omniglot); meta_lr: Adam 1e-3 in
# Finn et al., a decade either side; meta_batch_size: 4 here, 2-32 in the papers, the CPU's
# range (each step costs its batch).
SEARCH_SPACE: metabench.SearchSpace = {
    "inner_lr": metabench.LogUniform(0.005, 1.0),
    "meta_lr": metabench.LogUniform(1e-4, 1e-2),
    "meta_batch_size": metabench.Choice(2, 4, 8),
}


class MAML:
    """Model-agnostic meta-learning: learn an initialisation that adapts in a few SGD steps."""

    # The registered names (second order, first order), for error messages.
    names = ("maml", "fomaml")
    # Whether predict_batch adapts episodes together through torch.func.vmap; None: on any
    # device but the CPU, where vmap's batched convolutions are slower than a loop
    # (docs/algorithms.md, "Batched evaluation").
    batched_eval: bool | None = None

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: MAMLConfig) -> None:
        self.owner = self.names[hparams.first_order]
        check_config(hparams, self.owner)
        self.hparams = hparams
        self.episodes_per_step = hparams.meta_batch_size
        self.task_type = setup.task_type
        self.inner_lr = resolve_inner_lr(hparams, setup.task_type)
        self.model = build_model(setup).train()
        if hparams.channels_last:
            channels_last_activations(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=hparams.meta_lr)
        # Without batch norm no example's output depends on another's: one pass is the same.
        self._per_query = not hparams.transductive and bool(batch_norm_layers(self.model))
        self._compile = hparams.compile and not self._per_query
        if hparams.compile and self._per_query:
            warnings.warn(
                f"{self.owner}: compile=True is not used with transductive=False; the "
                "per-query test pass runs in eager mode", RuntimeWarning, stacklevel=2,
            )

    def train_task_spec(self, spec: metabench.TaskSpec) -> metabench.TaskSpec:
        """Training tasks with ``train_shots`` / ``train_queries`` when set (Finn et al.'s
        sinusoid trains at K = 10 and tests at K = 5)."""
        return replace(spec, shots=self.hparams.train_shots or spec.shots,
                       queries=self.hparams.train_queries or spec.queries)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """One Adam step on the mean query loss after adapting to each task of the batch."""
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self._vmapped_step(batch) if self.hparams.vmap_tasks else self._looped_step(batch)
        self.optimizer.step()
        return task_metrics(self.task_type, outputs.flatten(0, 1), batch.query_y.flatten(0, 1))

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Adapt to the support set (``test_steps`` SGD steps, no graph kept); query predictions."""
        if self._compile:
            return self._compiled_predict(episode)
        fast = self.adapt(episode.support_x, episode.support_y)
        with torch.inference_mode():
            return self._query_outputs(fast, episode.support_x, episode.query_x)

    def predict_batch(self, batch: metabench.EpisodeBatch) -> Tensor:
        """Query predictions ``[episodes, queries, outputs]`` of episodes of one shape, each
        adapted as :meth:`predict` adapts it (its own batch norm statistics included). With
        ``batched_eval`` the episodes adapt together through ``torch.func.vmap``, in chunks
        of at most ``BATCH_IMAGES`` images; otherwise (and with ``compile``) one at a time."""
        batched = self.batched_eval
        if batched is None:
            batched = batch.support_x.device.type != "cpu"
        if not batched or self._compile:
            return torch.stack([self.predict(episode) for episode in batch])
        images = batch.support_x.shape[1] + batch.query_x.shape[1]
        size = max(1, BATCH_IMAGES // images)
        tensors = (batch.support_x, batch.support_y, batch.query_x)
        return torch.cat([self._vmapped_predict(*(t[i : i + size] for t in tensors))
                          for i in range(0, len(batch), size)])

    def protocol_details(self) -> dict[str, Any]:
        """Test-time protocol facts for a leaderboard: how batch norm treats the query set."""
        return batch_statistics_protocol(self.model, self.hparams.transductive)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        """Fast weights after ``steps`` (default ``test_steps``) inner SGD steps, graph-free."""
        steps = self.hparams.test_steps if steps is None else steps
        with torch.inference_mode(False), torch.enable_grad():
            support_x, support_y = usable_for_autograd(support_x), usable_for_autograd(support_y)
            fast, fixed = self._split(self._test_weights())
            support_x = self._features(fixed | fast, support_x)
            for _ in range(steps):
                fast = {name: w.requires_grad_() for name, w in fast.items()}
                loss = self._loss(fixed | fast, support_x, support_y)
                grads = dict(zip(fast, torch.autograd.grad(loss, list(fast.values())), strict=True))
                with torch.no_grad():
                    fast = self._inner_update(fast, grads)
        return fixed | fast

    def _vmapped_predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """:meth:`predict` of stacked episodes, vmapped over the leading dimension."""
        weights, steps = self._test_weights(), self.hparams.test_steps

        def episode(support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
            fast, fixed = self._split(weights)
            features = self._features(weights, support_x)
            for _ in range(steps):
                fast = self._inner_update(fast, torch.func.grad(self._split_loss)(
                    fast, fixed, features, support_y))
            return self._query_outputs(fixed | fast, support_x, query_x)

        with torch.inference_mode(False), torch.no_grad(), contiguous_activations():
            tensors = [usable_for_autograd(t) for t in (support_x, support_y, query_x)]
            return torch.func.vmap(episode)(*tensors)

    def meta_parameters(self) -> Params:
        """The meta-parameters (the initialisation being learnt), by name."""
        return dict(self.model.named_parameters())

    def adapted(self, name: str) -> bool:
        """Whether the inner loop adapts meta-parameter ``name`` (MAML: every one)."""
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def _compiled_predict(self, episode: metabench.Episode) -> Tensor:
        with torch.inference_mode(False), torch.no_grad():
            tensors = (episode.support_x, episode.support_y, episode.query_x)
            support_x, support_y, query_x = (usable_for_autograd(t) for t in tensors)
            try:
                return compiled_adapt_and_predict()(
                    self.model, self.task_type, self.inner_lr, self.hparams.test_steps,
                    self._test_weights(), support_x, support_y, query_x,
                )
            except Exception as error:  # no C++ compiler, unsupported platform, ...
                warnings.warn(
                    f"maml: torch.compile failed ({type(error).__name__}: {error}); "
                    "evaluating in eager mode", RuntimeWarning, stacklevel=2,
                )
                self._compile = False
        return self.predict(episode)

    def _query_outputs(self, params: Params, support_x: Tensor, query_x: Tensor) -> Tensor:
        """Query outputs of the adapted network: in one pass (transductive), or each query
        with the support set alone (``features`` included: ANIL's frozen body too)."""

        def run(x: Tensor) -> Tensor:
            return self._forward(params, self._features(params, x))

        return per_query_outputs(run, support_x, query_x) if self._per_query else run(query_x)

    def _test_weights(self) -> Params:
        """Detached meta-parameters, convolution weights channels-last if so configured."""
        layout = torch.channels_last if self.hparams.channels_last else torch.contiguous_format
        return {
            name: p.detach().contiguous(memory_format=layout) if p.dim() == 4 else p.detach()
            for name, p in self.meta_parameters().items()
        }

    def _looped_step(self, batch: metabench.EpisodeBatch) -> Tensor:
        # One backward per task frees each task's graph before the next is built.
        outputs = []
        for episode in batch:
            params = self.meta_parameters()
            support_x, query_x = (self._features(params, x) for x in (episode.support_x, episode.query_x))
            fast = self._inner_loop(params, support_x, episode.support_y)
            output = self._forward(fast, query_x)
            (task_loss(self.task_type, output, episode.query_y) / len(batch)).backward()
            outputs.append(output.detach())
        return torch.stack(outputs)

    def _vmapped_step(self, batch: metabench.EpisodeBatch) -> Tensor:
        params = self.meta_parameters()

        def task(support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor):
            support_x, query_x = self._features(params, support_x), self._features(params, query_x)
            fast = self._inner_loop(params, support_x, support_y, torch.func.grad)
            output = self._forward(fast, query_x)
            return task_loss(self.task_type, output, query_y), output

        losses, outputs = torch.func.vmap(task)(
            batch.support_x, batch.support_y, batch.query_x, batch.query_y
        )
        losses.mean().backward()
        return outputs.detach()

    def _inner_loop(
        self,
        params: Params,
        support_x: Tensor,
        support_y: Tensor,
        grad_fn: Callable[..., Callable[..., Params]] | None = None,
    ) -> Params:
        """Training-time adaptation, differentiable back to ``params`` (to first order or not)."""
        first_order = self.hparams.first_order
        fast, fixed = self._split(params)
        for _ in range(self.hparams.train_steps):
            if grad_fn is None:
                loss = self._loss(fixed | fast, support_x, support_y)
                values = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
                grads = dict(zip(fast, values, strict=True))
            else:
                grads = grad_fn(self._split_loss)(fast, fixed, support_x, support_y)
            if first_order:
                grads = {name: g.detach() for name, g in grads.items()}
            fast = self._inner_update(fast, grads)
        return fixed | fast

    def _inner_update(self, fast: Params, grads: Params) -> Params:
        """One inner SGD step on the adapted weights (differentiable unless under no_grad)."""
        return {name: p - self.inner_lr * grads[name] for name, p in fast.items()}

    def _split(self, params: Params) -> tuple[Params, Params]:
        """The weights the inner loop adapts, and the others."""
        fast = {name: p for name, p in params.items() if self.adapted(name)}
        return fast, {name: p for name, p in params.items() if name not in fast}

    def _features(self, params: Params, x: Tensor) -> Tensor:
        """What is computed once per episode before adapting (MAML: the inputs themselves)."""
        return x

    def _forward(self, params: Params, x: Tensor) -> Tensor:
        """The outputs of the adapted part on ``_features`` (MAML: the whole model)."""
        return functional_call(self.model, params, (x,))

    def _loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return task_loss(self.task_type, self._forward(params, x), y)

    def _split_loss(self, fast: Params, fixed: Params, x: Tensor, y: Tensor) -> Tensor:
        return self._loss(fixed | fast, x, y)


def adapt_and_predict(
    model: torch.nn.Module, task_type: str, inner_lr: float, steps: int,
    params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor,
) -> Tensor:
    """Test-time adaptation and the query pass as one function, for ``torch.compile``."""

    def loss(weights: Params, x: Tensor, y: Tensor) -> Tensor:
        return task_loss(task_type, functional_call(model, weights, (x,)), y)

    for _ in range(steps):
        grads = torch.func.grad(loss)(params, support_x, support_y)
        params = {name: p - inner_lr * grads[name] for name, p in params.items()}
    return functional_call(model, params, (query_x,))


@functools.cache
def compiled_adapt_and_predict() -> Callable[..., Tensor]:
    """One compiled function for every MAML instance (compiled graphs are shared)."""
    return torch.compile(adapt_and_predict, dynamic=False)


def make_maml(setup: metabench.AlgorithmSetup, hparams: MAMLConfig) -> Any:
    """MAML for the cell's task type: :class:`MAML`, or ``MAMLRL`` for rl tasks."""
    if setup.task_type == "rl":
        return MAMLRL(setup, hparams)
    return MAML(setup, hparams)


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    types = {"classification", "regression", "rl"}
    register("maml", make_maml, task_types=types, defaults=MAMLConfig(),
             search_space=SEARCH_SPACE,
             description="MAML, second order, via torch.func.functional_call (Finn et al. 2017)")
    register("fomaml", make_maml, task_types=types, defaults=MAMLConfig(first_order=True),
             search_space=SEARCH_SPACE,
             description="first-order MAML: the inner gradients are treated as constants")

"""First-order Proto-MAML (Triantafillou et al. 2020): MAML whose linear head starts from the
prototypes, so it runs on episodes of any number of ways.

Per episode (google-research/meta-dataset ``meta_dataset/learners/optimization_learners.py``,
``MAMLLearner`` with ``proto_maml_fc_layer_init``): the support set is embedded with the
meta-parameters ``theta`` and each class's prototype ``c_k`` (mean embedding) gives the head
``W_k = 2 c_k``, ``b_k = -||c_k||^2`` (the linear form of ProtoNets' squared distances); then
``steps`` SGD steps of rate ``inner_lr`` adapt the embedding and the head together on the
support loss. First order: the inner gradients are constants (the authors' ``stop_gradient``)
and each is the partial derivative with the head and the embedding as separate variables
(their inner loop's loop variables). The meta-gradient of the query loss therefore reaches
``theta`` along two paths: through the adapted embedding (identity Jacobian) and through the
prototype initialisation of the head.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

import metabench
from metabench.algorithm_helpers import (
    batch_statistics_protocol,
    check_non_negative,
    check_positive,
    usable_for_autograd,
    use_batch_statistics,
)

Params = dict[str, Tensor]


@dataclass(frozen=True)
class ProtoMAMLConfig:
    """Hyperparameters; defaults are the authors' best fo-Proto-MAML trained from scratch on
    all sources (meta-dataset ``learn/gin/best/maml_init_with_proto_all_from_scratch.gin``:
    ``alpha`` 0.0114, one inner step in training and 1 + 5 at test, Adam at 7.25e-4, one
    episode a step). Their learning-rate decay and weight decay are left out.
    """

    inner_lr: float = 0.01139772733084185
    train_steps: int = 1
    test_steps: int = 6
    meta_lr: float = 7.252750256444753e-4
    meta_batch_size: int = 1


def proto_head(features: Tensor, labels: Tensor, ways: int) -> tuple[Tensor, Tensor]:
    """The head of the prototypes ``c_k``: weight ``2 c_k`` ``[ways, d]``, bias ``-||c_k||^2``."""
    one_hot = F.one_hot(labels, ways).to(features.dtype)
    prototypes = (one_hot.T @ features) / one_hot.sum(0).unsqueeze(-1)
    return 2 * prototypes, -(prototypes**2).sum(-1)


class ProtoMAML:
    """First-order Proto-MAML on the setup's backbone (batch norm with batch statistics)."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: ProtoMAMLConfig) -> None:
        check_hparams(hparams)
        self.hparams = hparams
        self.episodes_per_step = hparams.meta_batch_size
        self.model: nn.Module = use_batch_statistics(copy.deepcopy(setup.backbone)).to(setup.device)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=hparams.meta_lr)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """One Adam step on the mean query loss of the batch's episodes."""
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self.accumulate_meta_gradient(batch)
        self.optimizer.step()
        return metrics

    def accumulate_meta_gradient(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """Add the first-order meta-gradient of the batch's mean query loss to ``.grad``."""
        params: Params = dict(self.model.named_parameters())
        losses, accuracies = [], []
        for episode in batch:
            logits = self.query_logits(params, episode, self.hparams.train_steps)
            loss = F.cross_entropy(logits, episode.query_y)
            (loss / len(batch)).backward()
            losses.append(float(loss.detach()))
            accuracies.append(float((logits.argmax(-1) == episode.query_y).float().mean()))
        return {"loss": sum(losses) / len(losses), "accuracy": sum(accuracies) / len(accuracies)}

    def query_logits(self, params: Params, episode: metabench.Episode, steps: int) -> Tensor:
        """Query logits after ``steps`` first-order inner steps, differentiable to ``params``
        (through the adapted weights and through the prototype head)."""
        ways = int(episode.support_y.max()) + 1
        weight, bias = proto_head(self._embed(params, episode.support_x), episode.support_y, ways)
        fast, head = dict(params), (weight, bias)
        for _ in range(steps):
            fast, head = self._inner_step(fast, head, episode.support_x, episode.support_y)
        return self._embed(fast, episode.query_x) @ head[0].T + head[1]

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Adapt (``test_steps`` steps) to the support set; the query logits ``[queries, ways]``."""
        with torch.inference_mode(False), torch.enable_grad():
            support_x, support_y, query_x = (usable_for_autograd(t) for t in
                                             (episode.support_x, episode.support_y, episode.query_x))
            params = {name: p.detach() for name, p in self.model.named_parameters()}
            ways = int(support_y.max()) + 1
            with torch.no_grad():
                head = proto_head(self._embed(params, support_x), support_y, ways)
            for _ in range(self.hparams.test_steps):
                params, head = self._inner_step(params, head, support_x, support_y)
            with torch.no_grad():
                return self._embed(params, query_x) @ head[0].T + head[1]

    def protocol_details(self) -> dict[str, Any]:
        """Test-time protocol facts for a leaderboard: the query set in one pass (batch norm)."""
        return batch_statistics_protocol(self.model, transductive=True)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def _inner_step(self, fast: Params, head: tuple[Tensor, Tensor], support_x: Tensor,
                    support_y: Tensor) -> tuple[Params, tuple[Tensor, Tensor]]:
        """One SGD step on the support loss; the gradient is a constant (first order), taken
        with the embedding's weights and the head as separate variables."""
        leaves = {name: p.detach().requires_grad_() for name, p in fast.items()}
        weight, bias = (t.detach().requires_grad_() for t in head)
        logits = self._embed(leaves, support_x) @ weight.T + bias
        loss = F.cross_entropy(logits, support_y)
        grads = torch.autograd.grad(loss, [*leaves.values(), weight, bias])
        lr = self.hparams.inner_lr
        new_fast = {name: p - lr * g for (name, p), g in zip(fast.items(), grads, strict=False)}
        return new_fast, (head[0] - lr * grads[-2], head[1] - lr * grads[-1])

    def _embed(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.model, params, (x,))


def check_hparams(hp: ProtoMAMLConfig) -> None:
    """Fail with one line on a hyperparameter outside its range."""
    check_positive("protomaml", inner_lr=hp.inner_lr, meta_lr=hp.meta_lr,
                   meta_batch_size=hp.meta_batch_size)
    check_non_negative("protomaml", train_steps=hp.train_steps, test_steps=hp.test_steps)


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    register(
        "protomaml",
        ProtoMAML,
        task_types={"classification"},
        defaults=ProtoMAMLConfig(),
        variable_ways=True,
        # Around the authors' best values (maml_init_with_proto_all*.gin: alpha 0.011-0.020,
        # Adam 3e-4 to 7e-4), a decade either way.
        search_space={"inner_lr": metabench.LogUniform(1e-3, 1e-1),
                      "meta_lr": metabench.LogUniform(1e-4, 1e-2)},
        description="first-order Proto-MAML: MAML with the head initialised from the "
                    "prototypes, any number of ways (Triantafillou et al. 2020)",
    )

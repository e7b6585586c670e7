"""Prototypical Networks (Snell et al. 2017): classify by squared Euclidean distance to class means."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import metabench
from metabench.algorithm_helpers import (
    embed_batch,
    eval_mode_protocol,
    pool_before_relu,
    stacked_parts,
    use_channels_last,
)


@dataclass(frozen=True)
class ProtoNetConfig:
    """Hyperparameters; defaults follow Snell et al. 2017 (Adam 1e-3, halved every 2000 episodes).

    ``train_ways`` / ``train_queries`` = 0 train with the test spec's values (Snell et al.
    train Omniglot at 60 ways); ``meta_batch_size`` episodes are averaged per Adam step.
    ``channels_last`` stores convolution weights channels-last (faster on CPU; same results
    to float rounding).
    """

    lr: float = 1e-3
    lr_halving_every: int = 2000
    train_ways: int = 0
    train_queries: int = 0
    meta_batch_size: int = 1
    channels_last: bool = True


def prototypes(support: Tensor, labels: Tensor, ways: int) -> Tensor:
    """The mean embedding of each class: ``[..., ways, features]`` (leading dims are tasks)."""
    one_hot = F.one_hot(labels, ways).to(support.dtype)
    return (one_hot.transpose(-1, -2) @ support) / one_hot.sum(-2).unsqueeze(-1)


def prototype_logits(support: Tensor, labels: Tensor, query: Tensor, ways: int) -> Tensor:
    """Minus the squared Euclidean distance from each query to each prototype."""
    protos = prototypes(support, labels, ways)
    return -((query.unsqueeze(-2) - protos.unsqueeze(-3)) ** 2).sum(-1)


class ProtoNet:
    """Prototypical Networks with a shared embedding backbone and no adaptation step."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: ProtoNetConfig) -> None:
        check_hparams(hparams)
        self.hparams = hparams
        self.episodes_per_step = hparams.meta_batch_size
        # Pooling before the ReLU: the same numbers, faster (metabench.backbones).
        model = pool_before_relu(setup.backbone.to(setup.device))
        self.model = use_channels_last(model, hparams.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=hparams.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=max(1, hparams.lr_halving_every), gamma=0.5
        )

    def train_task_spec(self, spec: metabench.TaskSpec) -> metabench.TaskSpec:
        """Snell et al. train with more ways (60 on Omniglot) than they test with."""
        return replace(
            spec,
            ways=self.hparams.train_ways or spec.ways,
            queries=self.hparams.train_queries or spec.queries,
        )

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        parts = stacked_parts(batch)  # one per episode when their sizes differ
        losses, accuracies = [], []
        for part in parts:
            logits, targets = self._batch_logits(part)
            loss = F.cross_entropy(logits, targets)
            (loss / len(parts)).backward()
            losses.append(float(loss.detach()))
            accuracies.append(float((logits.argmax(-1) == targets).float().mean()))
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": sum(losses) / len(parts), "accuracy": sum(accuracies) / len(parts)}

    def predict(self, episode: metabench.Episode) -> Tensor:
        self.model.eval()
        with torch.inference_mode():
            shots = episode.support_x.shape[0]
            features = self.model(torch.cat([episode.support_x, episode.query_x]))
            ways = int(episode.support_y.max()) + 1
            return prototype_logits(features[:shots], episode.support_y, features[shots:], ways)

    def protocol_details(self) -> dict[str, Any]:
        """Test-time protocol facts for a leaderboard: batch norm in ``eval()`` mode at test."""
        return eval_mode_protocol(self.model)

    def _batch_logits(self, batch: metabench.EpisodeBatch) -> tuple[Tensor, Tensor]:
        support, query, ways = embed_batch(self.model, batch)
        logits = prototype_logits(support, batch.support_y, query, ways)
        return logits.flatten(0, 1), batch.query_y.reshape(-1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def check_hparams(hp: ProtoNetConfig) -> None:
    """Fail with one line on a hyperparameter outside its range."""
    checks = {
        "lr": (hp.lr > 0, "must be positive"),
        "lr_halving_every": (hp.lr_halving_every >= 1, "must be >= 1"),
        "train_ways": (hp.train_ways == 0 or hp.train_ways >= 2, "must be 0 (test ways) or >= 2"),
        "train_queries": (hp.train_queries >= 0, "must be >= 0 (0: test queries)"),
        "meta_batch_size": (hp.meta_batch_size >= 1, "must be >= 1"),
    }
    for name, (ok, expected) in checks.items():
        if not ok:
            raise metabench.MetabenchError(f"protonet.{name}={getattr(hp, name)!r} {expected}")


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    register(
        "protonet",
        ProtoNet,
        task_types={"classification"},
        defaults=ProtoNetConfig(),
        variable_ways=True,
        # Snell et al. 2017: Adam 1e-3 (a decade either side), one episode a step (1-4 here).
        # Their higher training ways (60 on Omniglot) are left out: a wider episode sees more
        # images for the same episode budget; add them with --space protonet.train_ways=...
        search_space={"lr": metabench.LogUniform(1e-4, 1e-2),
                      "meta_batch_size": metabench.Choice(1, 2, 4)},
        description="Prototypical Networks: squared Euclidean distance to class means (Snell et al. 2017)",
    )

"""Cosine Prototypical Networks: a custom algorithm written against metabench's public API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import metabench


@dataclass(frozen=True)
class CosineConfig:
    """Hyperparameters: Adam learning rate and the initial softmax temperature."""

    lr: float = 1e-3
    temperature: float = 10.0


def cosine_logits(support: Tensor, labels: Tensor, query: Tensor, ways: int) -> Tensor:
    """Cosine similarity of each query to each class mean."""
    one_hot = F.one_hot(labels, ways).to(support.dtype)
    means = (one_hot.T @ support) / one_hot.sum(0).unsqueeze(1)
    return F.normalize(query, dim=-1) @ F.normalize(means, dim=-1).T


class CosineProtoNet:
    """Prototypical Networks scored by scaled cosine similarity (a learnable temperature)."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: CosineConfig) -> None:
        self.model = setup.backbone.to(setup.device)
        self.scale = torch.nn.Parameter(torch.tensor(hparams.temperature, device=setup.device))
        params = [*self.model.parameters(), self.scale]
        self.optimizer = torch.optim.Adam(params, lr=hparams.lr)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        self.model.train()
        losses = []
        for episode in batch:
            losses.append(F.cross_entropy(self._logits(episode), episode.query_y))
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss)}

    def predict(self, episode: metabench.Episode) -> Tensor:
        self.model.eval()
        with torch.inference_mode():
            return self._logits(episode)

    def _logits(self, episode: metabench.Episode) -> Tensor:
        shots = episode.support_x.shape[0]
        features = self.model(torch.cat([episode.support_x, episode.query_x]))
        ways = int(episode.support_y.max()) + 1
        similarity = cosine_logits(features[:shots], episode.support_y, features[shots:], ways)
        return self.scale * similarity

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "scale": self.scale.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            self.scale.copy_(state["scale"])
        self.optimizer.load_state_dict(state["optimizer"])


@metabench.hookimpl
def register_algorithms(register) -> None:
    register(
        "cosine-protonet",
        CosineProtoNet,
        task_types={"classification"},
        defaults=CosineConfig(),
        description="Prototypical Networks with scaled cosine similarity (example plugin)",
    )

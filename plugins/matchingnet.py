"""Matching Networks (Vinyals et al. 2016): attention over the support set by cosine similarity.

Each query's class probabilities are the attention-weighted sum of the one-hot support labels,
the attention a softmax over the cosine similarities between the query's embedding and every
support embedding (section 2.1, eq. 1-2). Full-context embeddings (FCE, appendix A) are an
option, off by default.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import metabench
from metabench.algorithm_helpers import (
    embed_batch,
    eval_mode_protocol,
    stacked_parts,
    use_channels_last,
)

# Salt of the seeded generator that initialises the FCE LSTMs (the prediction heads of MAML
# and Reptile use salt 1), so every instance of a cell starts from the same FCE weights.
FCE_SALT = 2


@dataclass(frozen=True)
class MatchingNetConfig:
    """Hyperparameters; docs/algorithms.md gives the source of each default.

    ``lr``: Adam's learning rate (1e-3, as Chen et al. 2019 and Knagg's reimplementation).
    ``meta_batch_size``: episodes averaged per Adam step (1, as both reimplementations).
    ``fce``: full-context embeddings (appendix A); off, as the paper's Omniglot results.
    ``fce_steps``: K, the attention LSTM's read steps; 0 = one per support example (Chen et al.).
    ``cosine_scale``: multiplies the cosines before the softmax; 1 is the paper's attention.
    ``channels_last``: convolution weights stored channels-last, as protonet (same results).
    """

    lr: float = 1e-3
    meta_batch_size: int = 1
    fce: bool = False
    fce_steps: int = 0
    cosine_scale: float = 1.0
    channels_last: bool = True


def cosine_similarities(query: Tensor, support: Tensor) -> Tensor:
    """Cosine similarity of every query to every support embedding: ``[..., queries, shots]``."""
    return F.normalize(query, dim=-1) @ F.normalize(support, dim=-1).transpose(-1, -2)


def attention_log_probs(scores: Tensor, labels: Tensor, ways: int) -> Tensor:
    """``log sum_i softmax(scores)_i * onehot(labels_i)``, computed stably: ``[..., queries, ways]``.

    ``scores`` are ``[..., queries, shots]``; the log of the attention mass on class k is the
    log-sum-exp of the scores of class k's support examples minus that of all the scores.
    """
    mask = F.one_hot(labels, ways).to(scores.dtype).log()  # 0 on the label, -inf elsewhere
    per_class = torch.logsumexp(scores.unsqueeze(-1) + mask.unsqueeze(-3), dim=-2)
    return per_class - torch.logsumexp(scores, dim=-1, keepdim=True)


class FullContextEmbedding(nn.Module):
    """FCE of Vinyals et al., appendix A: a bidirectional LSTM over the support set (A.2) and an
    attention LSTM with K read steps over it for each query (A.1)."""

    def __init__(self, features: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.support_lstm = nn.LSTM(features, features, batch_first=True, bidirectional=True)
        # Input [f'(x), r_{k-1}]: the same gates as the paper's LSTM with state [h_{k-1}, r_{k-1}].
        self.query_cell = nn.LSTMCell(2 * features, features)

    def embed_support(self, support: Tensor) -> Tensor:
        """g(x_i, S) = forward h_i + backward h_i + g'(x_i) (eq. A.2), for ``[tasks, shots, d]``."""
        states, _ = self.support_lstm(support)
        forward, backward = states.chunk(2, dim=-1)
        return support + forward + backward

    def embed_query(self, query: Tensor, support: Tensor) -> Tensor:
        """f(x, S) = attLSTM(f'(x), g(S), K) (eq. A.1), for ``[tasks, queries, d]`` queries."""
        steps = self.steps or support.shape[-2]
        hidden, cell = query.flatten(0, 1), torch.zeros_like(query.flatten(0, 1))
        flat_query = query.flatten(0, 1)
        for _ in range(steps):
            attention = torch.softmax(hidden.view_as(query) @ support.transpose(-1, -2), dim=-1)
            read = (attention @ support).flatten(0, 1)
            hidden, cell = self.query_cell(torch.cat([flat_query, read], -1), (hidden, cell))
            hidden = hidden + flat_query
        return hidden.view_as(query)

    def forward(self, support: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        support = self.embed_support(support)
        return support, self.embed_query(query, support)


def seeded_fce(setup: metabench.AlgorithmSetup, steps: int) -> FullContextEmbedding:
    """An FCE module with PyTorch's default LSTM distribution (uniform in +-1/sqrt(hidden)),
    drawn from ``setup.seeded_generator`` instead of the global generator."""
    fce = FullContextEmbedding(setup.feature_dim, steps)
    bound = 1.0 / math.sqrt(setup.feature_dim)
    generator = setup.seeded_generator(FCE_SALT)
    with torch.no_grad():
        for tensor in fce.parameters():
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * 2 * bound - bound)
    return fce.to(setup.device)


class MatchingNet:
    """Matching Networks with the shared embedding backbone and no adaptation step."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: MatchingNetConfig) -> None:
        check_hparams(hparams)
        self.hparams = hparams
        self.episodes_per_step = hparams.meta_batch_size
        self.model = use_channels_last(copy.deepcopy(setup.backbone).to(setup.device),
                                       hparams.channels_last)
        self.fce = seeded_fce(setup, hparams.fce_steps) if hparams.fce else None
        parameters = list(self.model.parameters())
        if self.fce is not None:
            parameters += list(self.fce.parameters())
        self.optimizer = torch.optim.Adam(parameters, lr=hparams.lr)

    def log_probs(self, support: Tensor, labels: Tensor, query: Tensor, ways: int) -> Tensor:
        """Log attention class probabilities for ``[tasks, shots, d]`` / ``[tasks, queries, d]``."""
        if self.fce is not None:
            support, query = self.fce(support, query)
        scores = self.hparams.cosine_scale * cosine_similarities(query, support)
        return attention_log_probs(scores, labels, ways)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        parts = stacked_parts(batch)  # one per episode when their sizes differ
        losses, accuracies = [], []
        for part in parts:
            log_probs, targets = self._batch_log_probs(part)
            loss = F.nll_loss(log_probs, targets)
            (loss / len(parts)).backward()
            losses.append(float(loss.detach()))
            accuracies.append(float((log_probs.argmax(-1) == targets).float().mean()))
        self.optimizer.step()
        return {"loss": sum(losses) / len(parts), "accuracy": sum(accuracies) / len(parts)}

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Log-probabilities ``[queries, ways]`` (batch norm with running averages, eval())."""
        self.model.eval()
        with torch.inference_mode():
            shots = episode.support_x.shape[0]
            features = self.model(torch.cat([episode.support_x, episode.query_x]))
            ways = int(episode.support_y.max()) + 1
            support, query = features[:shots].unsqueeze(0), features[shots:].unsqueeze(0)
            return self.log_probs(support, episode.support_y, query, ways)[0]

    def protocol_details(self) -> dict[str, Any]:
        """Test-time protocol facts for a leaderboard: batch norm in ``eval()`` mode at test."""
        return eval_mode_protocol(self.model)

    def _batch_log_probs(self, batch: metabench.EpisodeBatch) -> tuple[Tensor, Tensor]:
        support, query, ways = embed_batch(self.model, batch)
        log_probs = self.log_probs(support, batch.support_y, query, ways)
        return log_probs.flatten(0, 1), batch.query_y.reshape(-1)

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.fce is not None:
            state["fce"] = self.fce.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self.fce is None) != ("fce" not in state):
            found = "FCE weights" if "fce" in state else "no FCE weights"
            raise metabench.MetabenchError(f"matchingnet state has {found} but fce={self.hparams.fce}")
        self.model.load_state_dict(state["model"])
        if self.fce is not None:
            self.fce.load_state_dict(state["fce"])
        self.optimizer.load_state_dict(state["optimizer"])


def check_hparams(hp: MatchingNetConfig) -> None:
    """Fail with one line on a hyperparameter outside its range."""
    checks = {
        "lr": (hp.lr > 0, "must be positive"),
        "meta_batch_size": (hp.meta_batch_size >= 1, "must be >= 1"),
        "fce_steps": (hp.fce_steps >= 0, "must be >= 0 (0: one read step per support example)"),
        "cosine_scale": (hp.cosine_scale > 0, "must be positive"),
    }
    for name, (ok, expected) in checks.items():
        if not ok:
            raise metabench.MetabenchError(f"matchingnet.{name}={getattr(hp, name)!r} {expected}")


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    register(
        "matchingnet",
        MatchingNet,
        task_types={"classification"},
        defaults=MatchingNetConfig(),
        variable_ways=True,
        # Vinyals et al. 2016 give no optimiser settings; Adam 1e-3 (as in the code most
        # reimplementations follow), a decade either side.
        search_space={"lr": metabench.LogUniform(1e-4, 1e-2)},
        description="Matching Networks: softmax attention over cosine similarities (Vinyals et al. 2016)",
    )

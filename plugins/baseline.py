"""Baseline and Baseline++ (Chen et al. 2019): pre-train a classifier over all training
classes on ordinary mini-batches, then fine-tune a fresh head on each support set.

Chen, Liu, Kira, Wang and Huang, *A Closer Look at Few-shot Classification*, ICLR 2019,
section 3; code github.com/wyharveychen/CloserLookFewShot (``methods/baselinetrain.py``,
``methods/baselinefinetune.py``, ``backbone.py``, ``train.py``).

Training draws mini-batches from ``setup.train_batches`` (``uses_episodes = False``): the
harness samples no episodes for it and charges every image drawn against an episode
budget, ``ways * (shots + queries)`` images to the episode. At test the backbone is frozen
(evaluation mode: batch norm uses its running averages, as the authors' ``save_features``
does) and a new head is trained on the support features with SGD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import metabench
from metabench.algorithm_helpers import eval_mode_protocol, use_channels_last

# Salt of the seeded generator that initialises the pre-training classifier (the
# gradient-based algorithms' ``ways``-output head uses salt 1).
CLASSIFIER_SALT = 2
# The authors' scale factors: 2 for heads of up to 200 classes, 10 above ("in omniglot, a
# larger scale factor is required to handle >1000 output classes"), backbone.py distLinear.
SMALL_SCALE, LARGE_SCALE, LARGE_ABOVE = 2.0, 10.0, 200


@dataclass(frozen=True)
class BaselineConfig:
    """Hyperparameters; defaults follow Chen et al. 2019 and their code (docs/algorithms.md).

    Pre-training: Adam with PyTorch's default learning rate 1e-3 (``train.py``:
    ``torch.optim.Adam(model.parameters())``), mini-batches of 16 (``SimpleDataManager(...,
    batch_size=16)``). ``cosine`` selects Baseline++'s classifier, ``scale * cos(w_c,
    f(x))``, with ``scale`` 0 meaning the authors' rule (2 for up to 200 classes, 10 above,
    decided per classifier: the pre-training one over all training classes, the test head
    over ``ways``). Test: ``finetune_epochs`` passes over the support set in shuffled
    mini-batches of ``finetune_batch``, SGD with ``finetune_lr``, ``finetune_momentum``,
    ``finetune_dampening`` and ``finetune_weight_decay`` (the paper: "100 iterations with a
    batch size of 4"; ``baselinefinetune.py``: 100 passes over batches of 4, SGD lr 0.01,
    momentum 0.9, dampening 0.9, weight decay 0.001). ``channels_last`` stores convolution
    weights channels-last (faster on CPU; same results to float rounding).
    """

    lr: float = 1e-3
    batch_size: int = 16
    cosine: bool = False
    scale: float = 0.0
    finetune_epochs: int = 100
    finetune_batch: int = 4
    finetune_lr: float = 0.01
    finetune_momentum: float = 0.9
    finetune_dampening: float = 0.9
    finetune_weight_decay: float = 1e-3
    channels_last: bool = True


class Classifier(nn.Module):
    """A linear classifier, or Baseline++'s scaled cosine one (``weight``: ``[classes,
    features]``; no bias for cosine, as the authors' ``distLinear``).

    Weights are drawn from ``generator`` with PyTorch's ``nn.Linear`` distribution (uniform
    in +-1/sqrt(features)); the bias too, or zeros with ``zero_bias`` (the authors zero the
    pre-training classifier's bias).
    """

    def __init__(self, features: int, classes: int, cosine: bool, scale: float,
                 generator: torch.Generator, zero_bias: bool = False) -> None:
        super().__init__()
        weight, bias = initial_head(features, classes, cosine, generator, zero_bias)
        self.cosine, self.scale = cosine, scale
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, features: Tensor) -> Tensor:
        return head_logits(features, self.weight, self.bias, self.scale if self.cosine else None)


def initial_head(features: int, classes: int, cosine: bool, generator: torch.Generator,
                 zero_bias: bool = False) -> tuple[Tensor, Tensor | None]:
    """Weight ``[classes, features]`` and bias (None for cosine) as ``nn.Linear`` draws them."""
    bound = 1.0 / math.sqrt(features)

    def uniform(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator) * 2 * bound - bound

    weight = uniform(classes, features)
    if cosine:
        return weight, None
    return weight, torch.zeros(classes) if zero_bias else uniform(classes)


def head_logits(features: Tensor, weight: Tensor, bias: Tensor | None,
                scale: float | None) -> Tensor:
    """Linear logits, or ``scale * cos(w_c, f)`` when ``scale`` is given (Baseline++)."""
    if scale is not None:
        return cosine_logits(features, weight, scale)
    return F.linear(features, weight, bias)


def cosine_logits(features: Tensor, weight: Tensor, scale: float) -> Tensor:
    """``scale * cos(w_c, f)`` for every feature row ``f`` and class weight row ``w_c``."""
    return scale * F.normalize(features, dim=-1) @ F.normalize(weight, dim=-1).T


def scale_for(hparams: BaselineConfig, classes: int) -> float:
    """The cosine classifier's scale: ``hparams.scale``, or the authors' rule when it is 0."""
    if hparams.scale:
        return hparams.scale
    return SMALL_SCALE if classes <= LARGE_ABOVE else LARGE_SCALE


class Baseline:
    """Chen et al.'s Baseline (``cosine=False``) and Baseline++ (``cosine=True``)."""

    uses_episodes = False
    names: ClassVar[dict[bool, str]] = {False: "baseline", True: "baseline-pp"}

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: BaselineConfig) -> None:
        self.owner = self.names[hparams.cosine]
        check_hparams(hparams, self.owner)
        if setup.train_batches is None:
            raise metabench.MetabenchError(
                f"{self.owner} trains on setup.train_batches, which this setup lacks "
                "(a classification data set's training split provides them)")
        self.hparams = hparams
        self.batches = setup.train_batches
        self.model = use_channels_last(setup.backbone.to(setup.device), hparams.channels_last)
        classes = self.batches.num_classes
        self.classifier = Classifier(
            setup.feature_dim, classes, hparams.cosine, scale_for(hparams, classes),
            setup.seeded_generator(CLASSIFIER_SALT), zero_bias=True,
        ).to(setup.device)
        parameters = [*self.model.parameters(), *self.classifier.parameters()]
        self.optimizer = torch.optim.Adam(parameters, lr=hparams.lr)
        self.steps = 0

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """One Adam step on the next mini-batch of ``setup.train_batches`` (``batch`` is empty)."""
        self.model.train()
        images, labels = self.batches.batch(self.steps, self.hparams.batch_size)
        logits = self.classifier(self.model(images))
        loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return {"loss": float(loss.detach()), "accuracy": float(accuracy)}

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Train a fresh head on the frozen support features; return its query logits."""
        hp = self.hparams
        self.model.eval()
        with torch.no_grad():
            shots = episode.support_x.shape[0]
            features = self.model(torch.cat([episode.support_x, episode.query_x]))
            ways = int(episode.support_y.max()) + 1
            scale = scale_for(hp, ways) if hp.cosine else None
            weight, bias = finetune(features[:shots], episode.support_y, ways, scale, hp,
                                    finetune_generator(episode))
            return head_logits(features[shots:], weight, bias, scale)

    def protocol_details(self) -> dict[str, Any]:
        """Test-time protocol facts for a leaderboard: batch norm in ``eval()`` mode at test."""
        return eval_mode_protocol(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.classifier.load_state_dict(state["classifier"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])


def finetune(support: Tensor, labels: Tensor, ways: int, scale: float | None,
             hp: BaselineConfig, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """A new head trained on ``support`` features as ``baselinefinetune.py`` trains it.

    ``finetune_epochs`` passes, each over a fresh permutation of the support set in
    mini-batches of ``finetune_batch`` (the last one smaller), one step of SGD with
    momentum, dampening and weight decay (``torch.optim.SGD``'s update) on the mean
    cross-entropy of each. The head is a linear one, or a cosine one when ``scale`` is
    given; its initial weights and the permutations come from ``generator``. Returns the
    weight and the bias (None for cosine).

    The gradients are written out (softmax minus one-hot; for cosine, projected through
    the weight normalisation), the linear head's bias kept as a last weight column: the
    same numbers as autograd and ``torch.optim.SGD`` give (tested), at a fraction of their
    per-step overhead on a head this small.
    """
    device, dtype = support.device, support.dtype
    cosine = scale is not None
    weight, bias = initial_head(support.shape[-1], ways, cosine, generator)
    if scale is not None:
        inputs = scale * F.normalize(support, dim=-1)
        parameter = weight.to(device, dtype)
    else:
        assert bias is not None
        inputs = torch.cat([support, support.new_ones(len(support), 1)], 1)
        parameter = torch.cat([weight, bias[:, None]], 1).to(device, dtype)
    count, size = len(support), hp.finetune_batch
    orders = torch.rand(hp.finetune_epochs, count, generator=generator).argsort(-1).to(device)
    inputs, targets = inputs[orders], F.one_hot(labels, ways).to(dtype)[orders]
    decay, momentum, lr = hp.finetune_weight_decay, hp.finetune_momentum, hp.finetune_lr
    buffer: Tensor | None = None
    for epoch in range(hp.finetune_epochs):
        for start in range(0, count, size):
            x, target = inputs[epoch, start : start + size], targets[epoch, start : start + size]
            if cosine:
                norm = parameter.norm(dim=-1, keepdim=True).clamp_min_(1e-12)  # as F.normalize
                direction = parameter / norm
                error = torch.softmax(x @ direction.T, -1).sub_(target)
                grad = torch.mm(error.T, x).div_(len(x))  # with respect to the directions
                grad.addcmul_((grad * direction).sum(-1, keepdim=True), direction, value=-1)
                grad.div_(norm).add_(parameter, alpha=decay)
            else:
                error = torch.softmax(x @ parameter.T, -1).sub_(target)
                grad = torch.addmm(parameter, error.T, x, beta=decay, alpha=1 / len(x))
            if momentum:
                if buffer is None:
                    buffer = grad
                else:
                    buffer.mul_(momentum).add_(grad, alpha=1 - hp.finetune_dampening)
                grad = buffer
            parameter.add_(grad, alpha=-lr)
    if cosine:
        return parameter, None
    return parameter[:, :-1], parameter[:, -1]


def finetune_generator(episode: metabench.Episode) -> torch.Generator:
    """The generator of an episode's head and mini-batch order, seeded from its identity,
    so a prediction does not depend on what was predicted before."""
    identity = episode.identity
    seed = metabench.derive_seed("baseline-finetune", identity.dataset, identity.split,
                                 identity.seed, identity.index)
    return torch.Generator().manual_seed(seed)


def check_hparams(hp: BaselineConfig, owner: str) -> None:
    """Fail with one line on a hyperparameter outside its range."""
    checks = {
        "lr": (hp.lr > 0, "must be positive"),
        "batch_size": (hp.batch_size >= 1, "must be >= 1"),
        "scale": (hp.scale >= 0, "must be >= 0 (0: the authors' rule, 2 up to 200 classes, else 10)"),
        "finetune_epochs": (hp.finetune_epochs >= 1, "must be >= 1"),
        "finetune_batch": (hp.finetune_batch >= 1, "must be >= 1"),
        "finetune_lr": (hp.finetune_lr > 0, "must be positive"),
        "finetune_momentum": (0 <= hp.finetune_momentum < 1, "must be in [0, 1)"),
        "finetune_dampening": (0 <= hp.finetune_dampening <= 1, "must be in [0, 1]"),
        "finetune_weight_decay": (hp.finetune_weight_decay >= 0, "must be >= 0"),
    }
    for name, (ok, expected) in checks.items():
        if not ok:
            raise metabench.MetabenchError(f"{owner}.{name}={getattr(hp, name)!r} {expected}")


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    classification = {"classification"}
    # Chen et al. 2019: Adam 1e-3 for pre-training and SGD 0.01 for the new head, a decade
    # either side of each.
    space = {"lr": metabench.LogUniform(1e-4, 1e-2), "finetune_lr": metabench.LogUniform(1e-3, 1e-1)}
    register("baseline", Baseline, task_types=classification, defaults=BaselineConfig(),
             search_space=space, variable_ways=True,
             description="Baseline: linear classifier pre-trained on all training classes, "
                         "new head fine-tuned per episode (Chen et al. 2019)")
    register("baseline-pp", Baseline, task_types=classification,
             defaults=BaselineConfig(cosine=True), search_space=space, variable_ways=True,
             description="Baseline++: scaled cosine classifier pre-trained on all training "
                         "classes, new head fine-tuned per episode (Chen et al. 2019)")

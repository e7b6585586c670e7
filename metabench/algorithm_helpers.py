"""Helpers for writing algorithms, public API (docs/plugins.md lists them): model and seeded
head, losses and metrics, batch norm statistics and the protocol facts they imply,
channels-last layouts, hyperparameter checks, batches of any-way episodes. The built-in
algorithms use them; a plugin may rely on every name here that has no leading underscore."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metabench.algorithm import AlgorithmSetup
from metabench.backbones import pool_before_relu as pool_before_relu  # public here
from metabench.errors import MetabenchError
from metabench.protocol import EpisodeBatch
from metabench.variable_episodes import RaggedEpisodeBatch

# What ``protocol_details()["batch_norm"]`` says about the statistics that normalise the
# query set at test time.
TRANSDUCTIVE = "transductive"  # the batch's: the whole query set (and support set) together
NON_TRANSDUCTIVE = "non-transductive"  # the support set's plus one query's, query by query
RUNNING_AVERAGES = "running averages"  # eval(): averages kept in training
NO_BATCH_NORM = "none"
# Most images in one batched (vmap) pass of the per-query test path: bounds its memory.
PER_QUERY_IMAGES = 2048

# Salt of the seeded generator that initialises the prediction head, shared by every
# algorithm so that MAML, Reptile and the learn2learn references start from the same weights.
HEAD_SALT = 1


class BackboneWithHead(nn.Module):
    """A backbone followed by a linear prediction head."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def make_head(setup: AlgorithmSetup) -> nn.Linear:
    """A linear head (``ways`` outputs, or one for regression) initialised from the setup's seed.

    The distribution is PyTorch's default for ``nn.Linear`` (uniform in +-1/sqrt(fan_in)),
    drawn from ``setup.seeded_generator`` instead of the global generator.
    """
    head = nn.Linear(setup.feature_dim, setup.output_dim)
    bound = 1.0 / math.sqrt(setup.feature_dim)
    generator = setup.seeded_generator(HEAD_SALT)
    with torch.no_grad():
        for tensor in (head.weight, head.bias):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * 2 * bound - bound)
    return head


def build_model(setup: AlgorithmSetup) -> BackboneWithHead:
    """A private copy of the setup's backbone plus a seeded head, on the setup's device.

    Batch norm layers use batch statistics in training and in testing (see
    :func:`use_batch_statistics`).
    """
    model = BackboneWithHead(copy.deepcopy(setup.backbone), make_head(setup))
    use_batch_statistics(model)
    return model.to(setup.device)


def use_batch_statistics(module: nn.Module) -> nn.Module:
    """Make every batch norm layer normalise with the statistics of the batch it sees.

    This is the batch norm of Finn et al. (2017) and of Nichol et al. (2018), and what
    learn2learn's vision models do (``track_running_stats=False``): no running averages are
    kept, so adapting to a task never changes shared state. A query set put through in one
    pass is normalised with its own statistics (transductive); :func:`per_query_outputs`
    puts each query through with the support set alone (non-transductive).
    """
    for layer in batch_norm_layers(module):
        layer.track_running_stats = False
        layer.running_mean = None
        layer.running_var = None
        layer.num_batches_tracked = None
    return module


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch norm layer of ``module`` (``BatchNorm1d/2d/3d`` and subclasses)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batch_statistics_protocol(module: nn.Module, transductive: bool) -> dict[str, Any]:
    """``protocol_details()`` of an algorithm whose batch norm uses batch statistics at test:
    transductive (one pass over the query set) or not (:func:`per_query_outputs`)."""
    if not batch_norm_layers(module):
        return {"batch_norm": NO_BATCH_NORM}
    return {"batch_norm": TRANSDUCTIVE if transductive else NON_TRANSDUCTIVE}


def eval_mode_protocol(module: nn.Module) -> dict[str, Any]:
    """``protocol_details()`` of an algorithm that embeds support and query sets together in
    ``eval()`` mode: running averages, unless a layer keeps none (then it normalises with
    the statistics of that batch, support and query sets together: transductive)."""
    layers = batch_norm_layers(module)
    if not layers:
        return {"batch_norm": NO_BATCH_NORM}
    keeps_averages = all(layer.running_mean is not None for layer in layers)
    return {"batch_norm": RUNNING_AVERAGES if keeps_averages else TRANSDUCTIVE}


def per_query_outputs(
    run: Callable[[Tensor], Tensor], support_x: Tensor, query_x: Tensor,
    batched: bool | None = None,
) -> Tensor:
    """Each query's row of ``run(support_x + [query])``: the query put through with the support
    set alone, so batch norm normalises it with the statistics of the support set and that
    query, and no prediction depends on another query.

    This is the non-transductive test of Nichol et al. 2018 (openai/supervised-reptile
    without ``--transductive``). ``run`` must not change state (batch norm without running
    averages). ``batched`` (default: on any device but the CPU) puts ``[queries, shots + 1,
    ...]`` copies through ``torch.func.vmap`` in chunks of at most ``PER_QUERY_IMAGES``
    images; otherwise the queries go one at a time, which is faster on a CPU
    (docs/algorithms.md).
    """
    if batched is None:
        batched = query_x.device.type != "cpu"
    if not batched:
        return torch.stack([run(torch.cat([support_x, query[None]]))[-1] for query in query_x])
    size = max(1, PER_QUERY_IMAGES // (len(support_x) + 1))
    last = torch.func.vmap(lambda x: run(x)[-1])
    return torch.cat([last(with_support(support_x, chunk)) for chunk in query_x.split(size)])


def with_support(support_x: Tensor, query_x: Tensor) -> Tensor:
    """``[queries, shots + 1, ...]``: the support set followed by one query, for each query."""
    support = support_x.unsqueeze(0).expand(len(query_x), *support_x.shape)
    return torch.cat([support, query_x.unsqueeze(1)], 1)


def use_channels_last(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Store the module's 4-D weights channels-last (when ``enabled``), in place.

    Convolutions then produce channels-last activations, and batch norm and max-pooling run
    in that layout: on a 2-core CPU, 2x2 max-pooling of 75 x 64 x 28 x 28 activations took
    13 ms in NCHW and 0.9 ms channels-last (docs/algorithms.md).
    """
    return module.to(memory_format=torch.channels_last) if enabled else module


def channels_last_activations(module: nn.Module) -> nn.Module:
    """Make every 2-D convolution of ``module`` return channels-last activations, in place.

    Weights stored channels-last are not enough for a first convolution over one-channel
    images: its weight and input are both ambiguous in layout, so its output (the largest
    activation map, where max-pooling is slowest in NCHW) stays NCHW. Forward hooks also
    run under ``torch.func.functional_call``; on an output that is already channels-last
    they cost nothing.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            layer.register_forward_hook(_channels_last_output)
    return module


_channels_last_suspended = False


@contextlib.contextmanager
def contiguous_activations() -> Iterator[None]:
    """Suspend the hooks of :func:`channels_last_activations` (under ``torch.func.vmap``
    composed with ``grad``, where memory formats cannot be set). A plain flag, not a check
    of the tensor: ``torch.compile`` traces a flag without a graph break."""
    global _channels_last_suspended
    previous, _channels_last_suspended = _channels_last_suspended, True
    try:
        yield
    finally:
        _channels_last_suspended = previous


def _channels_last_output(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    if _channels_last_suspended or torch._C._functorch.is_batchedtensor(output):  # vmap: no formats
        return output
    return output.contiguous(memory_format=torch.channels_last)


def task_loss(task_type: str, outputs: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy for classification, mean squared error for regression."""
    if task_type == "classification":
        return F.cross_entropy(outputs, targets)
    return F.mse_loss(outputs, targets)


def task_metrics(task_type: str, outputs: Tensor, targets: Tensor) -> dict[str, float]:
    """Loss, plus accuracy for classification, as plain floats."""
    metrics = {"loss": float(task_loss(task_type, outputs, targets))}
    if task_type == "classification":
        metrics["accuracy"] = float((outputs.argmax(-1) == targets).float().mean())
    return metrics


def usable_for_autograd(tensor: Tensor) -> Tensor:
    """A copy of an inference-mode tensor (which autograd cannot save), else the tensor itself."""
    return tensor.clone() if tensor.is_inference() else tensor


def check_positive(owner: str, **values: float) -> None:
    """Fail with one line naming the first hyperparameter that is not positive."""
    for name, value in values.items():
        if not value > 0:
            raise MetabenchError(f"{owner}.{name}={value!r} must be positive")


def check_non_negative(owner: str, **values: float) -> None:
    """Fail with one line naming the first hyperparameter that is negative."""
    for name, value in values.items():
        if value < 0:
            raise MetabenchError(f"{owner}.{name}={value!r} must be >= 0")


def stacked_parts(batch: EpisodeBatch) -> list[EpisodeBatch]:
    """``[batch]``, or for a batch of episodes of different sizes (any-way any-shot, a
    :class:`metabench.RaggedEpisodeBatch`) one stacked batch per episode."""
    if isinstance(batch, RaggedEpisodeBatch):
        return [EpisodeBatch.stack([episode]) for episode in batch]
    return [batch]


def embed_batch(model: nn.Module, batch: EpisodeBatch) -> tuple[Tensor, Tensor, int]:
    """Support ``[tasks, shots, d]`` and query ``[tasks, queries, d]`` features of a batch, and
    its ways, from one backbone pass over every image (batch norm sees them all together)."""
    tasks, shots = batch.support_x.shape[:2]
    images = torch.cat([batch.support_x.flatten(0, 1), batch.query_x.flatten(0, 1)])
    features = model(images)
    support = features[: tasks * shots].view(tasks, shots, -1)
    query = features[tasks * shots :].view(tasks, -1, features.shape[-1])
    return support, query, int(batch.support_y.max()) + 1

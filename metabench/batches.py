"""Training batches: ordinary mini-batches of a classification data set's training split.

Some algorithms do not learn from episodes: Chen et al.'s Baseline and Baseline++ (ICLR
2019) pre-train a classifier over every training class on ordinary mini-batches. The
harness hands each of them a :class:`TrainBatches` as ``AlgorithmSetup.train_batches``:
the same images, in the same order, for every algorithm of a cell group, in every process.

The order is a stream of epochs: epoch ``e`` is a random permutation of the split's
images, drawn from the 63-bit seed ``derive_seed("train-batches", data set, "train",
seed, e)`` (SplitMix64 sort keys, as the episode sampler draws, so no library's random
generator is involved); ``batch(step, size)`` is the images at stream positions
``step * size`` to ``step * size + size - 1``. Consecutive steps of one size thus see
every image once per epoch, in a fresh order each epoch, like a shuffled data loader.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from metabench.data.base import ClassificationDataset, ClassSplit, to_unit_float
from metabench.episodes import FLOAT_CACHE_BYTES
from metabench.errors import MetabenchError
from metabench.seeding import GOLDEN as _GOLDEN
from metabench.seeding import derive_seed
from metabench.seeding import splitmix as _splitmix

TRAIN = "train"


class TrainBatches:
    """Deterministic mini-batches of a classification data set's training split.

    ``batch(step, size)`` returns ``(images, labels)``: ``size`` images as floats in
    ``[0, 1]`` on ``device`` (``[size, *input_shape]``) and their labels (``int64``,
    ``[size]``), where label ``k`` is the split's class ``k`` (``class_names[k]``), so labels
    index all ``num_classes`` training classes. The same ``(step, size)`` gives the same
    batch in every process and whatever was drawn before; see the module docstring for the
    order. ``drawn`` counts the images served so far: the harness charges them against an
    episode budget (``ways * (shots + queries)`` images count as one episode of the cell's
    spec).

    Construction does no work: the split is read on first use, so an algorithm that never
    draws costs nothing.
    """

    def __init__(self, dataset: ClassificationDataset, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        if not isinstance(dataset, ClassificationDataset):
            raise MetabenchError(
                f"training batches need a classification data set; {dataset.name} is not one"
            )
        self.dataset = dataset
        self.seed = seed
        self.device = torch.device(device)
        self._drawn = 0
        self._orders: dict[int, np.ndarray] = {}
        self._labels: np.ndarray | None = None

    @property
    def data(self) -> ClassSplit:
        """The training split the batches come from."""
        return self.dataset.split(TRAIN)

    @property
    def num_classes(self) -> int:
        """Classes of the training split: labels are ``0 .. num_classes - 1``."""
        return self.data.num_classes

    @property
    def num_images(self) -> int:
        """Images of the training split (one epoch of the stream)."""
        return len(self.data.images)

    @property
    def class_names(self) -> list[str]:
        """The name of each label's class."""
        return list(self.data.class_names)

    @property
    def drawn(self) -> int:
        """Images served by :meth:`batch` so far."""
        return self._drawn

    def batch(self, step: int, size: int) -> tuple[Tensor, Tensor]:
        """Batch number ``step`` of ``size`` images: ``(images, labels)`` on ``device``."""
        rows = self.rows(step, size)
        data = self.data
        if self._labels is None:
            self._labels = np.repeat(np.arange(data.num_classes, dtype=np.int64), data.counts_np)
        labels = torch.from_numpy(self._labels[rows]).to(self.device)
        images = _gather(data, rows, self.device)
        self._drawn += size
        return images, labels

    def rows(self, step: int, size: int) -> np.ndarray:
        """The split's image rows of batch ``step`` of ``size`` (what :meth:`batch` gathers)."""
        for name, value, low in (("step", step, 0), ("size", size, 1)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise MetabenchError(f"training batch {name}={value!r} is invalid; "
                                     f"expected an integer >= {low}")
        total = self.num_images
        if total == 0:
            raise MetabenchError(f"the train split of {self.dataset.name} has no images")
        positions = int(step) * int(size) + np.arange(int(size), dtype=np.int64)
        epochs, offsets = np.divmod(positions, total)
        first, last = int(epochs[0]), int(epochs[-1])
        if first == last:
            return self._order(first)[offsets]
        rows = np.empty(int(size), dtype=np.int64)
        for epoch in range(first, last + 1):
            where = epochs == epoch
            rows[where] = self._order(epoch)[offsets[where]]
        return rows

    def _order(self, epoch: int) -> np.ndarray:
        """The permutation of the split's rows that is epoch ``epoch`` of the stream."""
        if epoch not in self._orders:
            if len(self._orders) >= 2:  # consecutive batches need the last one or two epochs
                self._orders.pop(next(iter(self._orders)))
            seed = np.uint64(derive_seed("train-batches", self.dataset.name, TRAIN, self.seed, epoch))
            keys = _splitmix(seed + np.arange(1, self.num_images + 1, dtype=np.uint64) * _GOLDEN)
            self._orders[epoch] = np.argsort(keys, kind="stable")
        return self._orders[epoch]


def _gather(data: ClassSplit, rows: np.ndarray, device: torch.device) -> Tensor:
    """The images at ``rows`` as ``[0, 1]`` floats on ``device`` (as episodes are built)."""
    source = data.float_images(device, FLOAT_CACHE_BYTES)
    if source is None:
        return to_unit_float(data.images.index_select(0, torch.from_numpy(rows)).to(device))
    if device.type == "cpu":
        return torch.from_numpy(source.numpy().take(rows, axis=0))
    return source.index_select(0, torch.from_numpy(rows).to(device))

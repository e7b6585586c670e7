"""The episode sampler: episode ``i`` of (data set, split, TaskSpec, seed) is the same everywhere.

Each episode draws from its own random generator, seeded by a stable hash of its full
identity, so the tensors do not depend on the process, the worker, the order of
requests, or which algorithm asks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from metabench.data.base import ClassificationDataset, ClassSplit, RegressionDataset, check_split
from metabench.protocol import REGRESSION, Episode, EpisodeBatch, EpisodeId, TaskSpec

Dataset = ClassificationDataset | RegressionDataset


def episode_seed(identity: EpisodeId, spec: TaskSpec) -> int:
    """A 63-bit seed from the episode's identity and spec (stable across processes)."""
    key = (
        f"{identity.dataset}|{identity.split}|{spec.task_type}|{spec.ways}|{spec.shots}|"
        f"{spec.queries}|{identity.seed}|{identity.index}"
    )
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class EpisodeSampler:
    """Builds the episodes of one (data set, split, TaskSpec, seed) on demand."""

    def __init__(
        self,
        dataset: Dataset,
        split: str,
        spec: TaskSpec,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        check_split(dataset.name, split)
        self.dataset = dataset
        self.split = split
        self.spec = spec
        self.seed = seed
        self.device = torch.device(device)
        self._data: ClassSplit | None = None
        if spec.task_type != REGRESSION:
            self._data = dataset.split(split)
            spec.check_fits(dataset.name, split, self._data.num_classes, self._data.min_examples)
        self._labels = self._make_labels()

    def episode(self, index: int) -> Episode:
        """Episode number ``index`` (any non-negative integer)."""
        identity = EpisodeId(self.dataset.name, self.split, self.seed, int(index))
        generator = torch.Generator().manual_seed(episode_seed(identity, self.spec))
        if self._data is None:
            return self._regression_episode(generator, identity)
        return self._classification_episode(generator, identity, self._data)

    def batch(self, indices: Iterable[int]) -> EpisodeBatch:
        """Several episodes stacked into one batch."""
        return EpisodeBatch.stack([self.episode(i) for i in indices])

    def batches(self, batch_size: int, start: int = 0) -> Iterator[EpisodeBatch]:
        """An endless stream of consecutive batches, from episode ``start`` on."""
        index = start
        while True:
            yield self.batch(range(index, index + batch_size))
            index += batch_size

    def __iter__(self) -> Iterator[Episode]:
        index = 0
        while True:
            yield self.episode(index)
            index += 1

    def _make_labels(self) -> tuple[Tensor, Tensor]:
        spec = self.spec
        ways = torch.arange(spec.ways, dtype=torch.int64)
        support = ways.repeat_interleave(spec.shots).to(self.device)
        query = ways.repeat_interleave(spec.queries).to(self.device)
        return support, query

    def _classification_episode(
        self, generator: torch.Generator, identity: EpisodeId, data: ClassSplit
    ) -> Episode:
        spec = self.spec
        per_class = spec.shots + spec.queries
        classes = torch.randperm(data.num_classes, generator=generator)[: spec.ways]
        rows = _draw_rows(data, classes, per_class, generator)  # [ways, shots + queries]
        images = _as_float(data.images[rows.reshape(-1)]).to(self.device)
        images = images.view(spec.ways, per_class, *images.shape[1:])
        support = images[:, : spec.shots].reshape(-1, *images.shape[2:])
        query = images[:, spec.shots :].reshape(-1, *images.shape[2:])
        support_y, query_y = self._labels
        return Episode(support, support_y, query, query_y, tuple(classes.tolist()), identity)

    def _regression_episode(self, generator: torch.Generator, identity: EpisodeId) -> Episode:
        assert isinstance(self.dataset, RegressionDataset)
        tensors = self.dataset.sample_task(generator, self.split, self.spec)
        sx, sy, qx, qy = (t.to(self.device) for t in tensors)
        return Episode(sx, sy, qx, qy, (), identity)


def _draw_rows(
    data: ClassSplit, classes: Tensor, per_class: int, generator: torch.Generator
) -> Tensor:
    """Row indices into ``data.images``: ``per_class`` distinct examples of each class."""
    if data.uniform:
        count = data.min_examples
        keys = torch.rand(len(classes), count, generator=generator)
        picks = keys.argsort(dim=1)[:, :per_class]
        return data.offsets[classes].unsqueeze(1) + picks
    rows = [
        data.offsets[c] + torch.randperm(int(data.counts[c]), generator=generator)[:per_class]
        for c in classes.tolist()
    ]
    return torch.stack(rows)


def _as_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()

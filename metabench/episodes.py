"""The episode sampler: episode ``i`` of (data set, split, TaskSpec, seed) is the same everywhere.

Each episode draws from its own counter-based random stream (SplitMix64 over a 63-bit seed
taken from a blake2b hash of its full identity), so the tensors do not depend on the
process, the worker, the order of requests, the batch it is built in, or which algorithm
asks. A batch of episodes is built with a handful of vectorised numpy operations and one
gather of all its images, converted to floats as one contiguous block. Training draws the
batches of several steps in one such call (:class:`ReadAhead`): the same episodes, for less
per-call work.

How an episode draws (fixed per split and spec, so part of its identity):

* classes: ``ways`` distinct classes in random order, by rejection (i.i.d. draws, redrawn
  on a repeat) when a repeat is unlikely, else by sorting one random key per class;
* examples: ``shots + queries`` distinct examples of each class, by the same two methods;
  the first ``shots`` are the support set, the rest the query set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from metabench.data.base import (
    ClassificationDataset,
    ClassSplit,
    Dataset,
    RegressionDataset,
    RLDataset,
    check_split,
    to_unit_float,
)
from metabench.errors import MetabenchError
from metabench.protocol import Episode, EpisodeBatch, EpisodeId, TaskSpec
from metabench.seeding import GOLDEN as _GOLDEN
from metabench.seeding import RETRY as _RETRY
from metabench.seeding import derive_seed
from metabench.seeding import splitmix as _splitmix

_MAX = np.iinfo(np.uint64).max
# Rejection sampling is used while a first draw has no repeat with at least this probability.
_MIN_ACCEPT = 0.5
# A split whose images as float32 fit in this many bytes is converted once per device and
# episodes gather floats directly; larger ones gather uint8 and convert each batch.
FLOAT_CACHE_BYTES = 512 * 2**20


def episode_seed(identity: EpisodeId, spec: TaskSpec) -> int:
    """A 63-bit seed from the episode's identity and spec (stable across processes)."""
    return derive_seed(_key_prefix(identity.dataset, identity.split, spec, identity.seed)
                      + str(identity.index))


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
        self._prefix = _key_prefix(dataset.name, split, spec, seed)
        self._draw: _DrawPlan | None = None
        if isinstance(dataset, ClassificationDataset):
            data = dataset.split(split)
            spec.check_fits(dataset.name, split, data.num_classes, data.min_examples)
            self._draw = _DrawPlan.build(data, spec)
        self._labels: dict[int, tuple[Tensor, Tensor]] = {}

    def episode(self, index: int) -> Episode:
        """Episode number ``index`` (any non-negative integer)."""
        if self._draw is None:
            return self._regression_episode(self._identity(index))
        support, support_y, query, query_y, classes, ids = self._build([index], batched=False)
        return Episode(support, support_y, query, query_y, classes[0], ids[0])

    def batch(self, indices: Iterable[int]) -> EpisodeBatch:
        """Several episodes stacked into one batch (each the same as ``episode(i)``)."""
        indices = list(indices)
        if not indices:
            raise MetabenchError("a batch of episodes needs at least one episode index")
        if self._draw is None:
            return EpisodeBatch.stack([self.episode(i) for i in indices])
        return EpisodeBatch(*self._build(indices, batched=True))

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

    def seeds(self, indices: list[int]) -> np.ndarray:
        """The per-episode seeds of ``indices`` as ``uint64`` (what every draw derives from)."""
        prefix = self._prefix
        for index in indices:
            if not isinstance(index, int | np.integer) or index < 0:
                raise MetabenchError(f"episode index {index!r} is invalid; expected an integer >= 0")
        return np.array([derive_seed(prefix + str(int(i))) for i in indices], dtype=np.uint64)

    def _identity(self, index: int) -> EpisodeId:
        if index < 0:
            raise MetabenchError(f"episode index {index} is invalid; expected an integer >= 0")
        return EpisodeId(self.dataset.name, self.split, self.seed, int(index))

    def _build(self, indices: list[int], batched: bool) -> tuple:
        assert self._draw is not None
        classes, rows = self._draw.sample(self.seeds(indices))
        support, query = self._draw.gather(rows, self.device, batched)
        support_y, query_y = self._label_tensors(len(indices) if batched else 0)
        if batched:  # a batch owns its labels; single episodes share read-only ones
            support_y, query_y = support_y.clone(), query_y.clone()
        ids = [EpisodeId(self.dataset.name, self.split, self.seed, int(i)) for i in indices]
        return support, support_y, query, query_y, [tuple(c) for c in classes.tolist()], ids

    def _label_tensors(self, batch: int) -> tuple[Tensor, Tensor]:
        """Labels ``0..ways-1`` in class-major order; ``batch`` 0 means one unbatched episode."""
        if batch not in self._labels:
            ways = torch.arange(self.spec.ways, dtype=torch.int64)
            support = ways.repeat_interleave(self.spec.shots)
            query = ways.repeat_interleave(self.spec.queries)
            if batch:
                support, query = support.repeat(batch, 1), query.repeat(batch, 1)
            self._labels[batch] = (support.to(self.device), query.to(self.device))
        return self._labels[batch]

    def _regression_episode(self, identity: EpisodeId) -> Episode:
        generator = torch.Generator().manual_seed(episode_seed(identity, self.spec))
        if isinstance(self.dataset, RLDataset):
            # An rl episode is a task: its parameters as the support input, nothing else.
            task = self.dataset.sample_task(generator, self.split, self.spec).to(self.device)
            empty = torch.empty(0, device=self.device)
            return Episode(task[None], empty.long(), empty, empty, (), identity)
        assert isinstance(self.dataset, RegressionDataset)
        tensors = self.dataset.sample_task(generator, self.split, self.spec)
        sx, sy, qx, qy = (t.to(self.device) for t in tensors)
        return Episode(sx, sy, qx, qy, (), identity)


#: Training draws this many bytes of episodes (at most READ_AHEAD_STEPS steps) per call.
READ_AHEAD_BYTES = 8 * 2**20
READ_AHEAD_STEPS = 8


class ReadAhead:
    """Consecutive training batches drawn several steps at a time.

    A small episode costs more in per-call work (hashing seeds, drawing, Python) than in
    copying its images, so one draw of ``steps`` batches costs little more than one. Each
    batch handed out is rows of that draw: the same tensors ``sampler.batch(indices)``
    gives, in memory of its own rows (no two batches share an element).
    """

    def __init__(self, sampler: EpisodeSampler, steps: int) -> None:
        self.sampler, self.steps = sampler, steps
        self._start = 0
        self._block: EpisodeBatch | None = None

    def batch(self, indices: range) -> EpisodeBatch:
        """Episodes ``indices`` (consecutive) as one batch."""
        start, size = indices.start, len(indices)
        block = self._block
        if block is None or start < self._start or start + size > self._start + len(block):
            block = self.sampler.batch(range(start, start + size * self.steps))
            self._block, self._start = block, start
        low = start - self._start
        return EpisodeBatch(block.support_x[low:low + size], block.support_y[low:low + size],
                            block.query_x[low:low + size], block.query_y[low:low + size],
                            block.classes[low:low + size], block.identities[low:low + size])


def read_ahead(sampler: EpisodeSampler, episodes_per_step: int) -> EpisodeSampler | ReadAhead:
    """``sampler`` drawing :data:`READ_AHEAD_BYTES` of consecutive training batches at a time
    where it is a fixed classification sampler (others are returned as they are)."""
    draw = sampler._draw if type(sampler) is EpisodeSampler else None
    if draw is None or episodes_per_step < 1:
        return sampler
    image_bytes = 4 * draw.data.images[0].numel()  # as float32
    step_bytes = image_bytes * draw.ways * draw.per_class * episodes_per_step
    steps = min(READ_AHEAD_STEPS, READ_AHEAD_BYTES // max(step_bytes, 1))
    return ReadAhead(sampler, steps) if steps > 1 else sampler


@dataclass
class _DrawPlan:
    """How episodes of one split and spec draw: methods, stream layout, the data to gather."""

    data: ClassSplit
    ways: int
    shots: int
    per_class: int
    class_draws: int  # ``ways`` (rejection) or the number of classes (sorted keys)
    example_draws: int  # ``per_class`` (rejection) or the largest class size (sorted keys)
    sort_classes: bool  # draw classes by sorted keys (a repeat is likely) rather than rejection
    sort_examples: bool
    steps: np.ndarray  # SplitMix64 state increments of one episode's block of draws
    class_n: np.ndarray  # ``[[classes]]``, broadcast over rows
    example_n: np.ndarray  # ``[[examples per class]]`` when every class has the same size

    @classmethod
    def build(cls, data: ClassSplit, spec: TaskSpec) -> _DrawPlan:
        per_class = spec.shots + spec.queries
        counts = data.counts_np
        sort_classes = not _rejects(data.num_classes, spec.ways)
        sort_examples = not _rejects(int(counts.min()), per_class)
        class_draws = data.num_classes if sort_classes else spec.ways
        example_draws = int(counts.max()) if sort_examples else per_class
        size = class_draws + spec.ways * example_draws
        steps = np.arange(1, size + 1, dtype=np.uint64) * _GOLDEN
        class_n = np.array([[data.num_classes]], dtype=np.uint64)
        example_n = np.array([[counts.min()]], dtype=np.uint64)
        return cls(data, spec.ways, spec.shots, per_class, class_draws, example_draws,
                   sort_classes, sort_examples, steps, class_n, example_n)

    def sample(self, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class indices ``[B, ways]`` and image rows ``[B, ways, shots + queries]``."""
        batch, ways = len(seeds), self.ways
        draws = _splitmix(seeds[:, None] + self.steps)
        classes = _distinct(draws[:, : self.class_draws], self.class_n, ways, lambda r: seeds[r],
                            sort=self.sort_classes)
        if self.data.uniform:  # skip a per-class lookup: every class has the same size
            example_n = self.example_n
        else:
            example_n = self.data.counts_np[classes].reshape(-1, 1).astype(np.uint64)

        def example_seeds(rows: np.ndarray) -> np.ndarray:
            way = (rows % ways + 1).astype(np.uint64)
            return seeds[rows // ways] + way * _RETRY

        picks = _distinct(
            draws[:, self.class_draws :].reshape(batch * ways, self.example_draws),
            example_n,
            self.per_class,
            example_seeds,
            sort=self.sort_examples,
            mask=not self.data.uniform,
        )
        rows = self.data.offsets_np[classes][:, :, None] + picks.reshape(batch, ways, -1)
        return classes, rows

    def gather(self, rows: np.ndarray, device: torch.device, batched: bool) -> tuple[Tensor, Tensor]:
        """Support ``[(B,) ways*shots, ...]`` and query ``[(B,) ways*queries, ...]`` floats."""
        source = self.data.float_images(device, FLOAT_CACHE_BYTES)
        support = self._take(source, rows[:, :, : self.shots], device)
        query = self._take(source, rows[:, :, self.shots :], device)
        if batched:
            support = support.view(len(rows), -1, *support.shape[1:])
            query = query.view(len(rows), -1, *query.shape[1:])
        return support, query

    def _take(self, source: Tensor | None, rows: np.ndarray, device: torch.device) -> Tensor:
        index = rows.reshape(-1)
        if source is None:  # too large to keep as floats: gather uint8, convert on the device
            images = self.data.images.index_select(0, torch.from_numpy(index))
            return to_unit_float(images.to(device))
        if device.type == "cpu":  # numpy's take has less per-call overhead than index_select
            return torch.from_numpy(source.numpy().take(index, axis=0))
        return source.index_select(0, torch.from_numpy(index).to(device))


RowSeeds = Callable[[np.ndarray], np.ndarray]


def _distinct(
    draws: np.ndarray, n: np.ndarray, k: int, row_seeds: RowSeeds, sort: bool, mask: bool = False
) -> np.ndarray:
    """``k`` distinct integers in ``[0, n)`` per row, in random order, from a row's draws.

    ``n`` is a column ``[rows or 1, 1]``. With ``sort``, the draws are sort keys, one per
    integer (with ``mask``, keys past a row's ``n`` are pushed last: rows of unequal ``n``);
    otherwise this is rejection sampling on ``k`` draws per row (a row with a repeat redraws
    from a stream derived from ``row_seeds(rows)``), chosen only where a repeat is unlikely.
    """
    width = draws.shape[1]
    if sort:
        keys = np.where(np.arange(width) < n, draws, _MAX) if mask else draws
        return np.argsort(keys, axis=1, kind="stable")[:, :k]
    picks = _below(draws, n)
    repeated = _repeated_rows(picks)
    attempt = 0
    while len(repeated):
        attempt += 1
        rows = np.array(repeated, dtype=np.int64)
        step = np.uint64((attempt * int(_GOLDEN)) % 2**64)  # Python ints: no overflow warning
        retry = _splitmix((row_seeds(rows) ^ _RETRY) + step)
        redraw = _splitmix(retry[:, None] + np.arange(1, k + 1, dtype=np.uint64) * _GOLDEN)
        picks[rows] = _below(redraw, np.broadcast_to(n, (len(picks), 1))[rows])
        repeated = [int(rows[i]) for i in _repeated_rows(picks[rows])]
    return picks


def _below(draws: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Map 64-bit draws to integers in ``[0, n)`` by a 32x32-bit multiply (n < 2**32)."""
    return ((draws >> np.uint64(32)) * n >> np.uint64(32)).astype(np.int64)


def _repeated_rows(picks: np.ndarray) -> list[int]:
    """Indices of the rows holding a repeated value."""
    k = picks.shape[1]
    if picks.size <= 256:  # small: Python sets beat numpy's per-call overhead
        return [i for i, row in enumerate(picks.tolist()) if len(set(row)) < k]
    ordered = np.sort(picks, axis=1)
    return np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1)).tolist()


def _rejects(n: int, k: int) -> bool:
    """True when ``k`` i.i.d. draws from ``n`` have no repeat with probability >= _MIN_ACCEPT."""
    accept = float(np.prod(1.0 - np.arange(k) / n)) if k <= n else 0.0
    return accept >= _MIN_ACCEPT


def _key_prefix(dataset: str, split: str, spec: TaskSpec, seed: int) -> str:
    return f"{dataset}|{split}|{spec.task_type}|{spec.ways}|{spec.shots}|{spec.queries}|{seed}|"




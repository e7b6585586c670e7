"""Any-way any-shot episodes: the variable sampler of Meta-Dataset (Triantafillou et al. 2020).

Follows google-research/meta-dataset ``meta_dataset/data/sampling.py``
(``EpisodeDescriptionSampler.sample_episode_description`` with ``num_ways``, ``num_support``
and ``num_query`` unset), with the options of :class:`metabench.protocol.AnyShot`:

1. ways ``N ~ U{min_ways, ..., min(max_ways, C)}`` (``sample_num_ways_uniformly``), then
   ``N`` distinct classes uniformly (``sample_class_ids_uniformly``);
2. query images per class ``q = min(max_query, min_c floor(n_c / 2))`` for the class sizes
   ``n_c`` (``compute_num_query``);
3. the total support size ``S = min(max_support, sum_c floor(beta * min(max_per_class,
   n_c - q) + 1))`` with ``beta ~ U(0, 1)`` (``sample_support_set_size``);
4. per-class support ``k_c = min(floor(p_c * (S - N)) + 1, n_c - q)`` with ``p_c``
   proportional to ``n_c * exp(U(min_log_weight, max_log_weight))``
   (``sample_num_support_per_class``).

Every draw comes from the counter-based SplitMix64 stream of :mod:`metabench.episodes`,
seeded from the episode's identity (data set, split, options, seed, index): an episode is
the same in every process and for every algorithm. Episodes differ in size, so a batch of
several is a :class:`RaggedEpisodeBatch` (iterate it); a batch of one is stacked as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metabench.data.base import ClassificationDataset, ClassSplit, check_split, to_unit_float
from metabench.episodes import FLOAT_CACHE_BYTES, EpisodeSampler
from metabench.errors import MetabenchError
from metabench.protocol import AnyShot, Episode, EpisodeBatch, EpisodeId, TaskSpec
from metabench.seeding import GOLDEN as _GOLDEN
from metabench.seeding import RETRY as _RETRY
from metabench.seeding import derive_seed
from metabench.seeding import splitmix as _splitmix

_UNIT = 2.0**-53
# Salts of an episode's independent sub-streams.
_WAYS, _CLASSES, _BETA, _WEIGHTS, _EXAMPLES = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Composition:
    """What an episode holds before any image is read: its classes (split indices, in
    label order), support images per class, query images per class, image rows, and the
    total support size drawn (step 3; the per-class floors of step 4 may give fewer)."""

    classes: tuple[int, ...]
    support: tuple[int, ...]
    queries: int
    support_rows: np.ndarray
    query_rows: np.ndarray
    drawn_support: int = 0

    @property
    def ways(self) -> int:
        return len(self.classes)

    @property
    def support_size(self) -> int:
        return int(sum(self.support))

    @property
    def images(self) -> int:
        return self.support_size + self.ways * self.queries


class RaggedEpisodeBatch(EpisodeBatch):
    """Episodes of different sizes: iterate it (or index it); it has no stacked tensors.

    Its ``support_x`` and the other tensor fields are empty; an algorithm that declares
    ``variable_ways`` handles a batch of this type episode by episode.
    """

    def __init__(self, episodes: Sequence[Episode]) -> None:
        empty = torch.empty(0)
        super().__init__(empty, empty.long(), empty, empty.long(),
                         [e.classes for e in episodes], [e.identity for e in episodes])
        self.episodes = list(episodes)

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]


def copy_batch(batch: EpisodeBatch) -> EpisodeBatch:
    """A copy of ``batch`` whose tensors the caller may change in place."""
    if isinstance(batch, RaggedEpisodeBatch):
        return RaggedEpisodeBatch([Episode(e.support_x.clone(), e.support_y.clone(),
                                           e.query_x.clone(), e.query_y.clone(), e.classes,
                                           e.identity) for e in batch])
    return EpisodeBatch(batch.support_x.clone(), batch.support_y.clone(), batch.query_x.clone(),
                        batch.query_y.clone(), list(batch.classes), list(batch.identities))


def batch_of(episodes: Sequence[Episode]) -> EpisodeBatch:
    """One episode stacked as usual, several as a :class:`RaggedEpisodeBatch`."""
    if not episodes:
        raise MetabenchError("a batch of episodes needs at least one episode index")
    if len(episodes) == 1:
        return EpisodeBatch.stack(list(episodes))
    return RaggedEpisodeBatch(episodes)


class VariableEpisodeSampler:
    """The any-way any-shot episodes of one (data set, split, options, seed)."""

    def __init__(self, dataset: ClassificationDataset, split: str, spec: TaskSpec,
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        check_split(dataset.name, split)
        if spec.any_shot is None:
            raise MetabenchError("VariableEpisodeSampler needs an any-way any-shot spec")
        self.dataset, self.split, self.spec, self.seed = dataset, split, spec, seed
        self.options: AnyShot = spec.any_shot
        self.device = torch.device(device)
        self.data: ClassSplit = dataset.split(split)
        spec.check_fits(dataset.name, split, self.data.num_classes, self.data.min_examples)
        self._prefix = f"{dataset.name}|{split}|any|{self.options.key}|{seed}|"

    def episode_seed(self, index: int) -> int:
        """The 63-bit seed every draw of episode ``index`` derives from."""
        if not isinstance(index, int | np.integer) or index < 0:
            raise MetabenchError(f"episode index {index!r} is invalid; expected an integer >= 0")
        return derive_seed(self._prefix + str(int(index)))

    def composition(self, index: int) -> Composition:
        """Episode ``index``'s classes, sizes and image rows (no image is read)."""
        seed = np.uint64(self.episode_seed(index))
        options, counts = self.options, self.data.counts_np
        total = self.data.num_classes
        high = min(options.max_ways, total)
        ways = options.min_ways + int(_below(_draws(seed, _WAYS, 1), high - options.min_ways + 1)[0])
        classes = np.argsort(_draws(seed, _CLASSES, total), kind="stable")[:ways]
        sizes = counts[classes].astype(np.int64)
        queries = int(min(options.max_query, int((sizes // 2).min())))
        remaining = sizes - queries
        beta = _uniform(_draws(seed, _BETA, 1))[0]
        size = support_set_size(remaining, options.max_per_class, options.max_support, beta)
        weights = np.exp(options.min_log_weight + (options.max_log_weight - options.min_log_weight)
                         * _uniform(_draws(seed, _WEIGHTS, ways)))
        support = support_per_class(sizes, remaining, size, weights)
        keys = _draws(seed, _EXAMPLES, int(sizes.max()) * ways).reshape(ways, -1)
        offsets = self.data.offsets_np[classes]
        support_rows, query_rows = [], []
        for c in range(ways):
            order = np.argsort(keys[c, : sizes[c]], kind="stable")
            support_rows.append(offsets[c] + order[: support[c]])
            query_rows.append(offsets[c] + order[support[c] : support[c] + queries])
        return Composition(tuple(int(c) for c in classes), tuple(int(k) for k in support),
                           queries, np.concatenate(support_rows), np.concatenate(query_rows),
                           size)

    def episode(self, index: int) -> Episode:
        """Episode number ``index`` (any non-negative integer)."""
        draw = self.composition(index)
        ways = torch.arange(draw.ways, dtype=torch.int64)
        support_y = ways.repeat_interleave(torch.tensor(draw.support, dtype=torch.int64))
        query_y = ways.repeat_interleave(draw.queries)
        identity = EpisodeId(self.dataset.name, self.split, self.seed, int(index))
        return Episode(self._gather(draw.support_rows), support_y.to(self.device),
                       self._gather(draw.query_rows), query_y.to(self.device), draw.classes,
                       identity)

    def batch(self, indices: Iterable[int]) -> EpisodeBatch:
        """Episodes ``indices``: stacked when one, else a :class:`RaggedEpisodeBatch`."""
        return batch_of([self.episode(i) for i in indices])

    def __iter__(self) -> Iterator[Episode]:
        index = 0
        while True:
            yield self.episode(index)
            index += 1

    def _gather(self, rows: np.ndarray) -> Tensor:
        source = self.data.float_images(self.device, FLOAT_CACHE_BYTES)
        index = torch.from_numpy(rows.astype(np.int64))
        if source is None:
            return to_unit_float(self.data.images.index_select(0, index).to(self.device))
        return source.index_select(0, index.to(source.device))


def support_set_size(remaining: np.ndarray, max_per_class: int, max_support: int,
                     beta: float) -> int:
    """``min(max_support, sum_c floor(beta * min(max_per_class, remaining_c) + 1))``
    (meta-dataset ``sample_support_set_size``)."""
    contributions = np.minimum(max_per_class, remaining)
    return int(min(np.floor(beta * contributions + 1).sum(), max_support))


def support_per_class(sizes: np.ndarray, remaining: np.ndarray, size: int,
                      weights: np.ndarray) -> np.ndarray:
    """``min(floor(p_c * (size - ways)) + 1, remaining_c)`` with ``p_c`` proportional to
    ``sizes_c * weights_c`` (meta-dataset ``sample_num_support_per_class``)."""
    shares = sizes * weights
    shares = shares / shares.sum()
    wanted = np.floor(shares * (size - len(sizes))).astype(np.int64) + 1
    return np.minimum(wanted, remaining)


def single_source_sampler(dataset: ClassificationDataset | object, split: str, spec: TaskSpec,
                          seed: int = 0, device: torch.device | str = "cpu") -> EpisodeSampler:
    """The sampler of one data set's split: fixed (:class:`EpisodeSampler`) or variable
    (any-way any-shot); ``metabench.multisource.make_sampler`` adds the multi-source case.

    Typed as an :class:`EpisodeSampler`: the other answers ``episode``, ``batch`` and
    ``__iter__`` the same way.
    """
    if spec.any_shot is not None:
        if not isinstance(dataset, ClassificationDataset):
            raise MetabenchError(f"data set '{getattr(dataset, 'name', dataset)}' is not a "
                                 "classification data set; any-way any-shot episodes need classes")
        return VariableEpisodeSampler(dataset, split, spec, seed, device)  # type: ignore[return-value]
    return EpisodeSampler(dataset, split, spec, seed, device)  # type: ignore[arg-type]


def mean_episode_images(sampler: Any, count: int = 50) -> float:
    """Mean images (support and query) of the sampler's episodes 0..count-1, from their
    compositions: what one training episode is charged as when an algorithm draws
    mini-batches instead under an episode budget."""
    compose = sampler.composition
    return float(np.mean([compose(i).images for i in range(count)]))


def _draws(seed: np.uint64, salt: int, count: int) -> np.ndarray:
    """``count`` 64-bit draws of the episode's sub-stream ``salt`` (SplitMix64)."""
    start = (int(seed) + salt * int(_RETRY)) % 2**64  # Python ints: no overflow warning
    base = _splitmix(np.array([start], dtype=np.uint64))
    steps = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN
    return _splitmix(base + steps)


def _uniform(draws: np.ndarray) -> np.ndarray:
    """Floats in ``[0, 1)`` from the top 53 bits of each draw."""
    return (draws >> np.uint64(11)).astype(np.float64) * _UNIT


def _below(draws: np.ndarray, n: int) -> np.ndarray:
    """Integers in ``[0, n)``, uniform to 2**-53."""
    return np.minimum((_uniform(draws) * n).astype(np.int64), n - 1)

"""Multi-source training (Meta-Dataset): a data set named ``glyphs+omniglot`` is the union of
its sources; each of its episodes comes from one source, drawn uniformly from the episode's
identity (Triantafillou et al. 2020, section 3.2: "the source is sampled uniformly").

Cells of a multi-source data set are tested on each source separately (and on any
``--test-dataset``, held out); the sources are built at the first source's input shape
(resized through their ``image_size`` option where they need it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from metabench.data.base import ClassificationDataset, ClassSplit, to_unit_float
from metabench.errors import MetabenchError
from metabench.protocol import Episode, EpisodeBatch, TaskSpec
from metabench.seeding import derive_seed
from metabench.sources import SEPARATOR
from metabench.variable_episodes import EpisodeSampler, batch_of, single_source_sampler


class MultiSource(ClassificationDataset):
    """Several classification data sets as one: episodes from one source at a time; a split
    is the union of the sources' splits (for algorithms that train on mini-batches), with
    class names ``source/class``."""

    def __init__(self, sources: Sequence[ClassificationDataset]) -> None:
        super().__init__()
        if len(sources) < 2:
            raise MetabenchError("a multi-source data set needs at least two sources")
        self.sources = list(sources)
        self.name = SEPARATOR.join(source.name for source in sources)
        self.input_shape = tuple(sources[0].input_shape)
        self.source = "multi-source: " + ", ".join(source.name for source in sources)

    def member(self, name: str) -> ClassificationDataset:
        """The source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise MetabenchError(f"'{name}' is not a source of '{self.name}'")

    def load_split(self, split: str) -> ClassSplit:
        parts = [source.split(split) for source in self.sources]
        images = [part.images for part in parts]
        if len({tensor.dtype for tensor in images}) > 1:
            images = [to_unit_float(tensor) for tensor in images]
        names = [f"{source.name}/{name}" for source, part in zip(self.sources, parts, strict=True)
                 for name in part.class_names]
        counts = np.concatenate([part.counts_np for part in parts])
        return ClassSplit.from_counts(torch.cat(images), counts, names)


class MultiSourceSampler:
    """Episode ``i`` of a multi-source split: the source drawn uniformly from the episode's
    identity, then that source's episode ``i`` (so its identity names the source)."""

    def __init__(self, dataset: MultiSource, split: str, spec: TaskSpec, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.dataset, self.split, self.spec, self.seed = dataset, split, spec, seed
        self.samplers = [single_source_sampler(source, split, spec, seed, device)
                         for source in dataset.sources]
        self._prefix = f"{dataset.name}|{split}|{spec.label}|{seed}|source|"

    def source_of(self, index: int) -> int:
        """Which source episode ``index`` comes from (uniform over the sources)."""
        if index < 0:
            raise MetabenchError(f"episode index {index} is invalid; expected an integer >= 0")
        return derive_seed(self._prefix + str(int(index))) % len(self.samplers)

    def episode(self, index: int) -> Episode:
        return self.samplers[self.source_of(index)].episode(index)

    def composition(self, index: int) -> Any:
        """The composition of a variable episode (see ``VariableEpisodeSampler``)."""
        sampler: Any = self.samplers[self.source_of(index)]
        return sampler.composition(index)

    def batch(self, indices: Iterable[int]) -> EpisodeBatch:
        episodes = [self.episode(i) for i in indices]
        if self.spec.any_shot is None and episodes:
            return EpisodeBatch.stack(episodes)
        return batch_of(episodes)

    def __iter__(self) -> Iterator[Episode]:
        index = 0
        while True:
            yield self.episode(index)
            index += 1


def make_sampler(dataset: ClassificationDataset | object, split: str, spec: TaskSpec,
                 seed: int = 0, device: torch.device | str = "cpu") -> EpisodeSampler:
    """The sampler of a split: fixed (:class:`EpisodeSampler`), variable, or multi-source.

    Typed as an :class:`EpisodeSampler`: the others answer ``episode``, ``batch`` and
    ``__iter__`` the same way.
    """
    if isinstance(dataset, MultiSource):
        return MultiSourceSampler(dataset, split, spec, seed, device)  # type: ignore[return-value]
    return single_source_sampler(dataset, split, spec, seed, device)

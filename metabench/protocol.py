"""The episodic protocol: task specifications, episodes and batches of episodes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metabench.errors import MetabenchError

CLASSIFICATION = "classification"
REGRESSION = "regression"
RL = "rl"  # meta-reinforcement learning: an episode is a task of an environment family
TASK_TYPES = (CLASSIFICATION, REGRESSION, RL)
SPLITS = ("train", "validation", "test")


def setting_label(task_type: str, ways: int, shots: int) -> str:
    """The one label of a setting, in keys, tables and reports: ``5w1s``, ``10shot`` for
    regression (one function per task, so no ways), or ``20traj`` for reinforcement
    learning (support trajectories per task)."""
    if task_type == REGRESSION:
        return f"{int(shots)}shot"
    if task_type == RL:
        return f"{int(shots)}traj"
    return f"{int(ways)}w{int(shots)}s"


@dataclass(frozen=True)
class TaskSpec:
    """What one episode asks: ``ways`` classes, ``shots`` support and ``queries`` query examples each.

    For regression, ``ways`` is ignored (one function per task) and ``shots``/``queries``
    count support and query points.
    """

    ways: int = 5
    shots: int = 1
    queries: int = 15
    task_type: str = CLASSIFICATION

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise MetabenchError(
                f"task type '{self.task_type}' is not known; expected one of {', '.join(TASK_TYPES)}"
            )
        if self.task_type == CLASSIFICATION and self.ways < 2:
            raise MetabenchError(f"ways={self.ways} is too small: an episode needs ways >= 2")
        if self.shots < 1:
            raise MetabenchError(f"shots={self.shots} is too small: an episode needs shots >= 1")
        if self.queries < 1:
            raise MetabenchError(f"queries={self.queries} is too small: an episode needs queries >= 1")

    @property
    def label(self) -> str:
        """A short name such as ``5w1s`` (or ``10shot`` for regression): see :func:`setting_label`."""
        return setting_label(self.task_type, self.ways, self.shots)

    def check_fits(self, dataset: str, split: str, classes: int, min_examples: int) -> None:
        """Fail with a clear message when a split cannot supply episodes of this spec."""
        if self.task_type != CLASSIFICATION:
            return
        if self.ways > classes:
            raise MetabenchError(
                f"ways={self.ways} is larger than the {classes} classes of "
                f"{dataset}'s '{split}' split"
            )
        needed = self.shots + self.queries
        if needed > min_examples:
            raise MetabenchError(
                f"shots + queries = {self.shots} + {self.queries} = {needed} is larger than the "
                f"{min_examples} examples per class of {dataset}'s '{split}' split"
            )


@dataclass(frozen=True)
class EpisodeId:
    """Where an episode comes from: the same identity gives the same tensors everywhere."""

    dataset: str
    split: str
    seed: int
    index: int


@dataclass
class Episode:
    """One task: support and query examples with labels remapped to ``0..ways-1``.

    ``classes`` are the split's class indices drawn, in label order (label ``k`` is
    ``classes[k]``); empty for regression. Support and query are class-major.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: tuple[int, ...]
    identity: EpisodeId

    @property
    def split(self) -> str:
        return self.identity.split

    @property
    def seed(self) -> int:
        return self.identity.seed

    @property
    def index(self) -> int:
        return self.identity.index

    def to(self, device: torch.device | str) -> Episode:
        """The same episode with its tensors on ``device``."""
        return Episode(
            self.support_x.to(device),
            self.support_y.to(device),
            self.query_x.to(device),
            self.query_y.to(device),
            self.classes,
            self.identity,
        )


@dataclass
class EpisodeBatch:
    """Episodes stacked along a leading batch dimension (all of one TaskSpec)."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: list[tuple[int, ...]] = field(default_factory=list)
    identities: list[EpisodeId] = field(default_factory=list)

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Episode:
        return Episode(
            self.support_x[i],
            self.support_y[i],
            self.query_x[i],
            self.query_y[i],
            self.classes[i],
            self.identities[i],
        )

    @classmethod
    def stack(cls, episodes: list[Episode]) -> EpisodeBatch:
        """Stack episodes of one TaskSpec into a batch."""
        return cls(
            torch.stack([e.support_x for e in episodes]),
            torch.stack([e.support_y for e in episodes]),
            torch.stack([e.query_x for e in episodes]),
            torch.stack([e.query_y for e in episodes]),
            [e.classes for e in episodes],
            [e.identity for e in episodes],
        )


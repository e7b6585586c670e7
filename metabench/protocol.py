"""The episodic protocol: task specifications, episodes and batches of episodes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metabench.errors import MetabenchError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

CLASSIFICATION = "classification"
REGRESSION = "regression"
RL = "rl"  # meta-reinforcement learning: an episode is a task of an environment family
TASK_TYPES = (CLASSIFICATION, REGRESSION, RL)
SPLITS = ("train", "validation", "test")
ANY = "any"  # the label of an any-way any-shot setting (ways and shots stored as 0)


def setting_label(task_type: str, ways: int, shots: int) -> str:
    """The one label of a setting, in keys, tables and reports: ``5w1s``, ``10shot`` for
    regression (one function per task, so no ways), or ``20traj`` for reinforcement
    learning (support trajectories per task)."""
    if task_type == REGRESSION:
        return f"{int(shots)}shot"
    if task_type == RL:
        return f"{int(shots)}traj"
    if int(ways) == 0 and int(shots) == 0:
        return ANY
    return f"{int(ways)}w{int(shots)}s"


@dataclass(frozen=True)
class AnyShot:
    """The variable-episode sampler of Triantafillou et al. 2020 (Meta-Dataset), section 3.2.

    Defaults are the authors' (google-research/meta-dataset,
    ``meta_dataset/learn/gin/setups/data_config_common.gin``): ways uniform in
    ``[min_ways, min(max_ways, classes)]``; query images per class ``min(max_query,
    floor(min class size / 2))``; a total support size ``min(max_support, sum_c
    floor(beta * min(max_per_class, remaining_c) + 1))`` with ``beta ~ U(0, 1)``; shares per
    class from ``size_c * exp(U(min_log_weight, max_log_weight))``.
    """

    min_ways: int = 5
    max_ways: int = 50
    max_query: int = 10
    max_support: int = 500
    max_per_class: int = 100
    min_log_weight: float = -0.6931471805599453  # log(0.5)
    max_log_weight: float = 0.6931471805599453  # log(2)

    def __post_init__(self) -> None:
        checks = {
            "min_ways": self.min_ways >= 2,
            "max_ways": self.max_ways >= self.min_ways,
            "max_query": self.max_query >= 1,
            "max_support": self.max_support >= self.max_ways,
            "max_per_class": self.max_per_class >= 1,
            "max_log_weight": self.max_log_weight >= self.min_log_weight,
        }
        for name, ok in checks.items():
            if not ok:
                raise MetabenchError(f"sampler option {name}={getattr(self, name)!r} is invalid; "
                                     f"expected {_ANY_SHOT_BOUNDS[name]}")

    @property
    def key(self) -> str:
        """The options as text, part of every variable episode's identity."""
        return ",".join(f"{k}={v!r}" for k, v in sorted(self.__dict__.items()))


_ANY_SHOT_BOUNDS = {
    "min_ways": "an integer >= 2", "max_ways": "an integer >= min_ways",
    "max_query": "an integer >= 1", "max_support": "an integer >= max_ways",
    "max_per_class": "an integer >= 1", "max_log_weight": "a number >= min_log_weight",
}


@dataclass(frozen=True)
class TaskSpec:
    """What one episode asks: ``ways`` classes, ``shots`` support and ``queries`` query examples each.

    For regression, ``ways`` is ignored (one function per task) and ``shots``/``queries``
    count support and query points. With ``any_shot`` (classification only) every episode
    draws its own ways and shots (:class:`AnyShot`): ``ways`` and ``shots`` are 0 and
    ``queries`` is the most query images per class.
    """

    ways: int = 5
    shots: int = 1
    queries: int = 15
    task_type: str = CLASSIFICATION
    any_shot: AnyShot | None = None

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise MetabenchError(
                f"task type '{self.task_type}' is not known; expected one of {', '.join(TASK_TYPES)}"
            )
        if self.any_shot is not None:
            if self.task_type != CLASSIFICATION or (self.ways, self.shots) != (0, 0):
                raise MetabenchError("an any-way any-shot spec is a classification spec with "
                                     f"ways=0 and shots=0, not {self.ways}w{self.shots}s")
            return
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

    @property
    def variable(self) -> bool:
        """True when every episode draws its own ways and shots (:class:`AnyShot`)."""
        return self.any_shot is not None

    def check_fits(self, dataset: str, split: str, classes: int, min_examples: int) -> None:
        """Fail with a clear message when a split cannot supply episodes of this spec."""
        if self.task_type != CLASSIFICATION:
            return
        if self.any_shot is not None:
            if classes < self.any_shot.min_ways or min_examples < 2:
                raise MetabenchError(
                    f"{dataset}'s '{split}' split has {classes} classes of at least "
                    f"{min_examples} examples; any-way any-shot episodes need "
                    f"min_ways={self.any_shot.min_ways} classes of at least 2")
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
        import torch  # deferred: the task types above are read by commands that never load torch

        return cls(
            torch.stack([e.support_x for e in episodes]),
            torch.stack([e.support_y for e in episodes]),
            torch.stack([e.query_x for e in episodes]),
            torch.stack([e.query_y for e in episodes]),
            [e.classes for e in episodes],
            [e.identity for e in episodes],
        )


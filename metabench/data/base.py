"""What a data set offers the episode sampler: class-grouped images, or a task family."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metabench.errors import MetabenchError
from metabench.protocol import CLASSIFICATION, REGRESSION, SPLITS, TaskSpec


@dataclass
class ClassSplit:
    """The examples of one split, grouped by class and stored contiguously.

    Class ``k`` owns ``images[offsets[k]:offsets[k + 1]]``. Images are ``uint8`` (scaled to
    ``[0, 1]`` floats when an episode is built) or already floating point.
    """

    images: Tensor
    offsets: Tensor
    class_names: list[str]

    def __post_init__(self) -> None:
        self.offsets = self.offsets.to(torch.int64)
        self.counts = self.offsets[1:] - self.offsets[:-1]

    @classmethod
    def from_dense(cls, images: Tensor, class_names: list[str]) -> ClassSplit:
        """Build from a ``[classes, examples, C, H, W]`` tensor."""
        classes, per_class = images.shape[:2]
        offsets = torch.arange(classes + 1, dtype=torch.int64) * per_class
        return cls(images.reshape(classes * per_class, *images.shape[2:]), offsets, class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def min_examples(self) -> int:
        return int(self.counts.min()) if self.num_classes else 0

    @property
    def uniform(self) -> bool:
        """True when every class has the same number of examples (the fast sampling path)."""
        return self.num_classes > 0 and int(self.counts.max()) == self.min_examples


class ClassificationDataset(ABC):
    """A few-shot classification data set with fixed, class-disjoint splits."""

    name: str = ""
    task_types = frozenset({CLASSIFICATION})
    input_shape: tuple[int, ...] = (1, 28, 28)
    source: str = ""

    def __init__(self) -> None:
        self._splits: dict[str, ClassSplit] = {}

    def split(self, split: str) -> ClassSplit:
        """The examples of ``split`` (loaded once, then cached in memory)."""
        check_split(self.name, split)
        if split not in self._splits:
            self._splits[split] = self.load_split(split)
        return self._splits[split]

    @abstractmethod
    def load_split(self, split: str) -> ClassSplit:
        """Load one split from disk or build it."""

    def describe(self) -> dict[str, Any]:
        """Classes per split, examples per class, and where the data comes from."""
        splits = {name: self.split(name) for name in SPLITS}
        return {
            "name": self.name,
            "task_type": CLASSIFICATION,
            "classes": {name: s.num_classes for name, s in splits.items()},
            "examples_per_class": _examples_summary(splits.values()),
            "input_shape": list(self.input_shape),
            "source": self.source,
        }


class RegressionDataset(ABC):
    """A family of regression tasks; each episode draws one task."""

    name: str = ""
    task_types = frozenset({REGRESSION})
    input_shape: tuple[int, ...] = (1,)
    source: str = ""

    @abstractmethod
    def sample_task(
        self, generator: torch.Generator, split: str, spec: TaskSpec
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draw one task: ``support_x, support_y, query_x, query_y`` as float tensors."""

    def describe(self) -> dict[str, Any]:
        """What the task family is and where it comes from."""
        return {
            "name": self.name,
            "task_type": REGRESSION,
            "classes": {name: None for name in SPLITS},
            "examples_per_class": None,
            "input_shape": list(self.input_shape),
            "source": self.source,
        }


def check_split(dataset: str, split: str) -> None:
    """Fail clearly on a split name that is not train, validation or test."""
    if split not in SPLITS:
        raise MetabenchError(
            f"split '{split}' of {dataset} is not known; expected one of {', '.join(SPLITS)}"
        )


def _examples_summary(splits: Any) -> int | str:
    counts = torch.cat([s.counts for s in splits if s.num_classes])
    low, high = int(counts.min()), int(counts.max())
    return low if low == high else f"{low}-{high}"

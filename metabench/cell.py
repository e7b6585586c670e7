"""A cell, the unit of work of a comparison: one algorithm trained and tested on one data set,
TaskSpec and seed. :func:`metabench.plan.build_plan` expands a configuration into cells.
"""

from __future__ import annotations

from dataclasses import dataclass

from metabench.protocol import TaskSpec
from metabench.sources import is_multi_source


@dataclass(frozen=True)
class Cell:
    """One unit of work: an algorithm trained and tested on one data set, spec and seed.

    ``test_dataset`` is the data set of the test episodes when it is not ``dataset`` (the
    cross-domain protocol: meta-train and validate on one, test on the other).
    """

    algorithm: str
    dataset: str
    spec: TaskSpec
    seed: int
    backbone: str
    test_dataset: str = ""

    @property
    def tested_on(self) -> str:
        """The data set of the test episodes."""
        return self.test_dataset or self.dataset

    @property
    def domains(self) -> str:
        """``glyphs``, or ``glyphs->omniglot`` for a cross-domain cell."""
        return domains_label(self.dataset, self.tested_on)

    @property
    def group(self) -> str:
        """The cell group: cells that share data, spec, seed and so the test episodes."""
        return f"{self.domains}/{self.spec.label}q{self.spec.queries}/seed{self.seed}"

    @property
    def train_group(self) -> str:
        """What decides the cell's training: its group, except that the cells of a
        multi-source data set share one training whatever source they are tested on."""
        if is_multi_source(self.dataset):
            return f"{self.dataset}/{self.spec.label}q{self.spec.queries}/seed{self.seed}"
        return self.group

    @property
    def key(self) -> str:
        """Unique within a run, e.g. ``maml/glyphs/5w1sq15/seed0``."""
        return f"{self.algorithm}/{self.group}"

    @property
    def setting(self) -> str:
        """The data set and spec, e.g. ``glyphs 5w1s``."""
        return f"{self.domains} {self.spec.label}"


def domains_label(dataset: str, test_dataset: str | None) -> str:
    """``glyphs`` when training and test data are one data set, else ``glyphs->omniglot``."""
    if not test_dataset or test_dataset == dataset:
        return dataset
    return f"{dataset}->{test_dataset}"

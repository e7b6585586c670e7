"""The types of the plugin API: what each ``register`` callback accepts, and the factories.

Plugin authors annotate their hooks with these (all exported from :mod:`metabench`) so a
type checker sees a misspelt keyword or a wrong factory; the registry reads the keyword
names from the same signatures, so a keyword a type checker accepts is exactly one the
registry accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from torch import nn

    from metabench.algorithm import Algorithm, AlgorithmSetup
    from metabench.backends.base import Backend
    from metabench.cell import Cell as Cell  # named by the hook specs (metabench.hookspecs)
    from metabench.config import Config
    from metabench.data.base import Dataset
    from metabench.preset_types import Preset
    from metabench.records import CellResult as CellResult
    from metabench.reports.data import ReportData
    from metabench.search_space import SearchSpace

#: ``factory(setup, hparams)``: an algorithm on the setup's backbone, with its hyperparameters.
AlgorithmFactory = Callable[["AlgorithmSetup", Any], "Algorithm"]
#: ``factory(**options)``: a data set (``data_root``, ``download``, ``cache_dir`` and its own).
DatasetFactory = Callable[..., "Dataset"]
#: ``factory(input_shape)``: an ``nn.Module`` with an ``out_features`` attribute.
BackboneFactory = Callable[[tuple[int, ...]], "nn.Module"]
#: ``render(frame, path)``: writes a results table to a file.
ReporterRender = Callable[["pd.DataFrame", Path], None]
#: ``figure(data)``: a matplotlib figure of a report's data, or None when it does not apply.
PlotFigure = Callable[["ReportData"], "Figure | None"]
#: ``factory(config)``: a backend (where cells run) set up from the comparison's options.
BackendFactory = Callable[["Config"], "Backend"]
#: The environment record stored with every run (JSON-serialisable values).
MachineInfo = dict[str, Any]


class RegisterAlgorithm(Protocol):
    """The ``register`` callback of ``register_algorithms``."""

    def __call__(self, name: str, factory: AlgorithmFactory, *,
                 task_types: Iterable[str] | None = None, defaults: Any = None,
                 description: str = "", search_space: SearchSpace | None = None,
                 variable_ways: bool = False) -> None:
        """Register ``factory`` under ``name``.

        :param task_types: the task types it supports (none: every one).
        :param variable_ways: it handles episodes whose ways and shots vary (the any-way
            any-shot protocol, docs/multisource.md): ``predict`` returns ``[queries, ways of
            the episode]`` and ``meta_train_step`` takes a
            :class:`metabench.RaggedEpisodeBatch` (iterate it) when it asks for several
            episodes a step. Without it, such cells are skipped with the reason.
        :param defaults: a frozen dataclass instance of its hyperparameters.
        :param description: one line for ``metabench plugins`` (default: the docstring's first).
        :param search_space: what ``metabench tune`` may vary: hyperparameter name ->
            :class:`metabench.LogUniform`, ``Uniform``, ``IntUniform`` or ``Choice``
            (checked against ``defaults`` when a tuning starts).
        """


class RegisterDataset(Protocol):
    """The ``register`` callback of ``register_datasets``."""

    def __call__(self, name: str, factory: DatasetFactory, *,
                 task_types: Iterable[str] | None = None, description: str = "") -> None:
        """Register ``factory`` under ``name``; ``task_types`` holds its one task type."""


class RegisterBackbone(Protocol):
    """The ``register`` callback of ``register_backbones``."""

    def __call__(self, name: str, factory: BackboneFactory, *,
                 task_types: Iterable[str] | None = None, description: str = "") -> None:
        """Register ``factory`` under ``name`` for the given task types (none: every one)."""


class RegisterReporter(Protocol):
    """The ``register`` callback of ``register_reporters``."""

    def __call__(self, name: str, render: ReporterRender, *, description: str = "",
                 suffix: str = "", requires: Iterable[str] = ()) -> None:
        """Register an output format ``name``.

        :param suffix: its file extension (default: ``.`` + name).
        :param requires: modules it imports; a missing one is a one-line error before any
            results are read.
        """


class RegisterPlot(Protocol):
    """The ``register`` callback of ``register_plots``."""

    def __call__(self, name: str, figure: PlotFigure, *, description: str = "") -> None:
        """Register a plot kind ``name``; ``figure(data)`` draws it (None: nothing to draw)."""


class RegisterBackend(Protocol):
    """The ``register`` callback of ``register_backends``."""

    def __call__(self, name: str, factory: BackendFactory, *, description: str = "") -> None:
        """Register a backend ``name``; ``factory(config)`` returns a
        :class:`metabench.backends.base.Backend`."""


class RegisterPreset(Protocol):
    """The ``register`` callback of ``register_presets``."""

    def __call__(self, name: str, preset: Preset, *, description: str = "") -> None:
        """Register a paper's protocol and results (:class:`metabench.Preset`) as ``name``
        (``metabench reproduce NAME``); ``description`` defaults to the preset's title."""


REGISTER_TYPES: dict[str, type] = {
    "algorithm": RegisterAlgorithm,
    "dataset": RegisterDataset,
    "backbone": RegisterBackbone,
    "reporter": RegisterReporter,
    "plot": RegisterPlot,
    "backend": RegisterBackend,
    "preset": RegisterPreset,
}


def register_keywords(kind: str) -> tuple[str, ...]:
    """The keyword arguments the ``register`` callback of a kind accepts."""
    signature = inspect.signature(REGISTER_TYPES[kind].__call__)
    return tuple(name for name, parameter in signature.parameters.items()
                 if parameter.kind is inspect.Parameter.KEYWORD_ONLY)

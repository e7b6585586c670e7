"""metabench: a plugin-based benchmark harness for meta-learning."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plugin_types import (
    AlgorithmFactory,
    BackboneFactory,
    BackendFactory,
    DatasetFactory,
    MachineInfo,
    PlotFigure,
    RegisterAlgorithm,
    RegisterBackbone,
    RegisterBackend,
    RegisterDataset,
    RegisterPlot,
    RegisterPreset,
    RegisterReporter,
    ReporterRender,
)
from metabench.version import __version__

if TYPE_CHECKING:
    from metabench.algorithm import Algorithm, AlgorithmSetup
    from metabench.api import compare, leaderboard, report
    from metabench.batches import TrainBatches
    from metabench.cell import Cell
    from metabench.metrics import Metric
    from metabench.preset_types import Preset, Published
    from metabench.protocol import (
        AnyShot,
        Episode,
        EpisodeBatch,
        EpisodeId,
        TaskSpec,
        setting_label,
    )
    from metabench.records import CellResult, CellRow, EpisodeRow
    from metabench.reproduction import reproduce
    from metabench.results import export, load_cells, load_results
    from metabench.search_space import Choice, IntUniform, LogUniform, SearchSpace, Uniform
    from metabench.seeding import derive_seed
    from metabench.session import RunInterrupted
    from metabench.tuning import tune
    from metabench.variable_episodes import RaggedEpisodeBatch, VariableEpisodeSampler


# Every name below is loaded on first use: ``import metabench`` (and so every reading command,
# ``metabench report`` ...) stays free of torch, pandas and the algorithm plugins. The types a
# plugin module names at import time (``hookimpl``, ``Register*``) are loaded at once; they are light.
_LAZY = {
    "Algorithm": "metabench.algorithm",
    "AlgorithmSetup": "metabench.algorithm",
    "TrainBatches": "metabench.batches",
    "Metric": "metabench.metrics",
    "Cell": "metabench.cell",
    "Preset": "metabench.preset_types",
    "Published": "metabench.preset_types",
    "AnyShot": "metabench.protocol",
    "Episode": "metabench.protocol",
    "EpisodeBatch": "metabench.protocol",
    "EpisodeId": "metabench.protocol",
    "TaskSpec": "metabench.protocol",
    "setting_label": "metabench.protocol",
    "CellResult": "metabench.records",
    "CellRow": "metabench.records",
    "EpisodeRow": "metabench.records",
    "Choice": "metabench.search_space",
    "IntUniform": "metabench.search_space",
    "LogUniform": "metabench.search_space",
    "SearchSpace": "metabench.search_space",
    "Uniform": "metabench.search_space",
    "derive_seed": "metabench.seeding",
    "RaggedEpisodeBatch": "metabench.variable_episodes",
    "VariableEpisodeSampler": "metabench.variable_episodes",
    "compare": "metabench.api",
    "load_results": "metabench.results",
    "load_cells": "metabench.results",
    "export": "metabench.results",
    "leaderboard": "metabench.api",
    "report": "metabench.api",
    "reproduce": "metabench.reproduction",
    "tune": "metabench.tuning",
    "RunInterrupted": "metabench.session",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'metabench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Algorithm",
    "AlgorithmFactory",
    "AlgorithmSetup",
    "AnyShot",
    "BackboneFactory",
    "BackendFactory",
    "Cell",
    "CellResult",
    "CellRow",
    "Choice",
    "DatasetFactory",
    "Episode",
    "EpisodeBatch",
    "EpisodeId",
    "EpisodeRow",
    "IntUniform",
    "LogUniform",
    "MachineInfo",
    "MetabenchError",
    "Metric",
    "PlotFigure",
    "Preset",
    "Published",
    "RaggedEpisodeBatch",
    "RegisterAlgorithm",
    "RegisterBackbone",
    "RegisterBackend",
    "RegisterDataset",
    "RegisterPlot",
    "RegisterPreset",
    "RegisterReporter",
    "ReporterRender",
    "RunInterrupted",
    "SearchSpace",
    "TaskSpec",
    "TrainBatches",
    "Uniform",
    "VariableEpisodeSampler",
    "__version__",
    "compare",
    "derive_seed",
    "export",
    "hookimpl",
    "leaderboard",
    "load_cells",
    "load_results",
    "report",
    "reproduce",
    "setting_label",
    "tune",
]

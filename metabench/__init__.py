"""metabench: a plugin-based benchmark harness for meta-learning."""

from __future__ import annotations

import importlib

from metabench.algorithm import Algorithm, AlgorithmSetup
from metabench.batches import TrainBatches
from metabench.cell import Cell
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.metrics import Metric
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
from metabench.presets import Preset, Published
from metabench.protocol import AnyShot, Episode, EpisodeBatch, EpisodeId, TaskSpec, setting_label
from metabench.records import CellResult, CellRow, EpisodeRow
from metabench.search_space import Choice, IntUniform, LogUniform, SearchSpace, Uniform
from metabench.seeding import derive_seed
from metabench.variable_episodes import RaggedEpisodeBatch, VariableEpisodeSampler

__version__ = "0.1.0"

# The run and results API pulls in pandas and scipy: load it on first use only.
_LAZY = {
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
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metabench' has no attribute '{name}'")


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

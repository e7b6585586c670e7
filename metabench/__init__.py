"""metabench: a plugin-based benchmark harness for meta-learning."""

from __future__ import annotations

from metabench.algorithm import Algorithm, AlgorithmSetup
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.protocol import Episode, EpisodeBatch, EpisodeId, Protocol, TaskSpec

__version__ = "0.1.0"

# The results API pulls in pandas and scipy: load it on first use only.
_LAZY = {"compare": "metabench.api", "load_results": "metabench.api",
         "load_cells": "metabench.api"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metabench' has no attribute '{name}'")


__all__ = [
    "Algorithm",
    "AlgorithmSetup",
    "Episode",
    "EpisodeBatch",
    "EpisodeId",
    "MetabenchError",
    "Protocol",
    "TaskSpec",
    "__version__",
    "compare",
    "hookimpl",
    "load_cells",
    "load_results",
]

"""metabench: a plugin-based benchmark harness for meta-learning."""

from __future__ import annotations

from metabench.algorithm import Algorithm, AlgorithmSetup
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.protocol import Episode, EpisodeBatch, EpisodeId, Protocol, TaskSpec

__version__ = "0.1.0"

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
    "hookimpl",
]

"""Backends: where the cells of a plan run. Each registers through ``register_backends``
(the built-in ``local`` and ``ray`` too), so a plugin can add a SLURM or Kubernetes launcher.

A backend gets a :class:`Job` and hands every finished cell's result to ``on_result`` in
the driver, which alone writes the store (one transaction per cell, in any order). The
types live in :mod:`metabench.backends.base` (backends import them from there); this
module adds the lookup by name, which needs the registry.
"""

from __future__ import annotations

from metabench import registry
from metabench.backends.base import Backend, BackendFactory, CellRunner, Job, TaskBoard
from metabench.config import Config
from metabench.errors import unknown_name_error

__all__ = ["Backend", "BackendFactory", "CellRunner", "Job", "TaskBoard", "get_backend"]


def get_backend(name: str, config: Config) -> Backend:
    """The backend registered as ``name``, built for ``config``."""
    backends = registry.collect("backend")
    if name not in backends:
        raise unknown_name_error("backend", name, backends)
    backend: Backend = backends[name].factory(config)
    return backend

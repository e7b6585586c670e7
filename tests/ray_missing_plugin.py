"""A plugin that imports in the driver but not on a Ray worker (not installed there)."""

from __future__ import annotations

import metabench
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

try:
    import ray

    on_worker = ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
except ImportError:
    on_worker = False
if on_worker:
    raise ImportError("No module named 'driver_only_dependency'")


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    register("driver-only", ProtoNet, task_types={"classification"}, defaults=ProtoNetConfig())

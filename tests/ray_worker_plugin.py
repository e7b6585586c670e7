"""Plugins for the Ray backend tests, imported by the driver and by Ray workers.

``ray_missing_plugin`` (below, as a second module) fails to import on a Ray worker, as a
plugin installed on the driver's machine only would. ``selfkiller`` writes its worker's pid
to the file named by RAY_TEST_PID_FILE and sleeps in its first step while that file is
new, so a test can kill the worker process mid-cell; the retried cell then runs through.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import metabench
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

PID_FILE_ENV = "RAY_TEST_PID_FILE"


class SelfKiller(ProtoNet):
    """ProtoNet whose first attempt waits to be killed."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        marker = Path(os.environ[PID_FILE_ENV])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(120)
        return super().meta_train_step(batch)


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    register("selfkiller", SelfKiller, task_types={"classification"}, defaults=ProtoNetConfig())

"""A plugin for the hardening tests (loaded with ``--plugin hardening_plugin``): a ProtoNet
that sleeps in each training step (``METABENCH_TEST_STEP_SLEEP`` seconds), and an export
format that writes half a file and then waits (to be interrupted)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
from test_compare_plugin import Flat, micro_dataset

import metabench
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

STEP_SLEEP_ENV = "METABENCH_TEST_STEP_SLEEP"
STARTED_ENV = "METABENCH_TEST_EXPORT_STARTED"


class Sleepy(ProtoNet):
    """ProtoNet whose every training step sleeps a while first."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        time.sleep(float(os.environ.get(STEP_SLEEP_ENV, "0")))
        return super().meta_train_step(batch)


class Broken(ProtoNet):
    """ProtoNet that fails in its first training step."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        raise RuntimeError("broken on purpose")


def render_stuck(frame: pd.DataFrame, path: str | Path) -> None:
    """Writes half the rows, says so in the file named by STARTED_ENV, then waits."""
    with open(path, "w") as handle:
        handle.write(frame.head(len(frame) // 2).to_csv(index=False))
        handle.flush()
        Path(os.environ[STARTED_ENV]).write_text("started")
        time.sleep(120)
        handle.write(frame.to_csv(index=False))


@metabench.hookimpl
def register_datasets(register) -> None:
    register("micro", micro_dataset, task_types={"classification"})


@metabench.hookimpl
def register_backbones(register) -> None:
    register("flat", Flat, task_types={"classification", "regression"})


@metabench.hookimpl
def register_algorithms(register) -> None:
    register("sleepy", Sleepy, task_types={"classification"}, defaults=ProtoNetConfig())
    register("broken", Broken, task_types={"classification"}, defaults=ProtoNetConfig())


@metabench.hookimpl
def register_reporters(register) -> None:
    register("stuck", render_stuck, suffix=".csv", description="half a file, then a wait")

"""A tiny plugin for the compare tests: a small data set, a small backbone, misbehaving algorithms.

Loaded by the tests through the plugin manager (fixture ``compare_plugin``) and by
subprocesses through ``--plugin test_compare_plugin`` with ``tests/`` on PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import nn

import metabench
from metabench.data.synthetic import SyntheticImages
from metabench.plugins import get_plugin_manager
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

# Set to make ``interrupter`` raise KeyboardInterrupt (as Ctrl-C would) in its first step.
ARMED = {"interrupt": False}
SLEEP_ENV = "METABENCH_TEST_SLEEP"


class Flat(nn.Sequential):
    """Flatten and one hidden layer: fast enough for end-to-end tests."""

    def __init__(self, input_shape: Sequence[int] = (1, 8, 8), hidden: int = 32) -> None:
        size = 1
        for dim in input_shape:
            size *= int(dim)
        super().__init__(nn.Flatten(), nn.Linear(size, hidden), nn.ReLU())
        self.out_features = hidden


def micro_dataset(**options: Any) -> SyntheticImages:
    """8x8 synthetic prototypes, a few classes per split."""
    dataset = SyntheticImages(classes=(12, 8, 8), examples=20, image_size=8, seed=3)
    dataset.name = "micro"
    return dataset


class Boom(ProtoNet):
    """Raises in its third training step."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            raise RuntimeError("boom: the algorithm broke\nsecond line not shown")
        return super().meta_train_step(batch)


class Hog(ProtoNet):
    """Asks for 20 TB in its first step: PyTorch's CPU allocator really fails."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        torch.empty(5 * 10**12)
        return super().meta_train_step(batch)


class CudaHog(ProtoNet):
    """Fails at test time as a GPU that ran out of memory does."""

    def predict(self, episode: metabench.Episode) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class NaNLoss(ProtoNet):
    """Reports a NaN loss from its second step on."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        metrics = super().meta_train_step(batch)
        self.calls = getattr(self, "calls", 0) + 1
        return {**metrics, "loss": float("nan")} if self.calls >= 2 else metrics


class Interrupter(ProtoNet):
    """Raises KeyboardInterrupt in its first step while ARMED; sleeps while SLEEP_ENV is set."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        if ARMED["interrupt"]:
            raise KeyboardInterrupt
        if os.environ.get(SLEEP_ENV):
            time.sleep(60)
        return super().meta_train_step(batch)


class Noisy(ProtoNet):
    """ProtoNet that also draws from the global torch RNG every step (seeding must fix it)."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        metrics = super().meta_train_step(batch)
        with torch.no_grad():
            for parameter in self.model.parameters():
                parameter.add_(torch.randn_like(parameter), alpha=1e-3)
        return metrics


@metabench.hookimpl
def register_datasets(register) -> None:
    register("micro", micro_dataset, task_types={"classification"})


@metabench.hookimpl
def register_backbones(register) -> None:
    register("flat", Flat, task_types={"classification", "regression"})


@metabench.hookimpl
def register_algorithms(register) -> None:
    classification = {"classification"}
    register("boom", Boom, task_types=classification, defaults=ProtoNetConfig())
    register("nanloss", NaNLoss, task_types=classification, defaults=ProtoNetConfig())
    register("hog", Hog, task_types=classification, defaults=ProtoNetConfig())
    register("cudahog", CudaHog, task_types=classification, defaults=ProtoNetConfig())
    register("interrupter", Interrupter, task_types=classification, defaults=ProtoNetConfig())
    register("noisy", Noisy, task_types=classification, defaults=ProtoNetConfig())
    register("batched", ProtoNet, task_types=classification, defaults=ProtoNetConfig(meta_batch_size=3))


@pytest.fixture
def compare_plugin():
    """Register this module as a plugin for one test."""
    get_plugin_manager().register(sys.modules[__name__], name="test_compare_plugin")
    ARMED["interrupt"] = False
    yield sys.modules[__name__]
    ARMED["interrupt"] = False


def test_plugin_registers_its_parts(compare_plugin):
    from metabench import registry

    assert {"boom", "nanloss", "interrupter", "noisy", "batched"} <= set(registry.get_algorithms())
    assert "micro" in registry.get_datasets() and "flat" in registry.get_backbones()
    assert Flat((1, 8, 8))(torch.zeros(2, 1, 8, 8)).shape == (2, 32)

"""A test plugin that ships a paper preset and a second micro data set.

Loaded by the tests through the plugin manager (fixture ``preset_plugin``) and by
``metabench --plugin preset_plugin`` with ``tests/`` on the path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pytest
from torch import nn

import metabench
from metabench import Preset, Published
from metabench.data.synthetic import SyntheticImages
from metabench.plugins import get_plugin_manager

PUBLISHED = Published("protonet", "5w1s", 50.0, 2.0, "95% CI", "Tester et al. 2026, Table 1")

TEST_PRESET = Preset(
    title="ProtoNets on micro",
    source="Tester et al. 2026",
    compare={
        "algorithms": ["protonet"], "datasets": ["micro"], "ways": [5], "shots": [1],
        "queries": 5, "episodes": 12, "budget": "steps:6", "backbone": "flat",
        "val_episodes": 4, "val_points": 2,
        "dataset_options": {"micro": {"noise": 0.3}},
        "hparams": {"protonet": {"lr": 0.01}},
    },
    published=(PUBLISHED,),
    notes=("a preset for tests",),
)


def other_micro(image_size: int = 8, **options: Any) -> SyntheticImages:
    """Another 8x8 synthetic data set (other classes, class names ``other-...``)."""
    dataset = OtherMicro(classes=(12, 8, 9), examples=20, image_size=image_size, seed=11)
    dataset.name = "other-micro"
    return dataset


class OtherMicro(SyntheticImages):
    """Synthetic prototypes whose class names say which data set they come from."""

    def load_split(self, split: str):  # type: ignore[no-untyped-def]
        data = super().load_split(split)
        data.class_names = [f"other-{name}" for name in data.class_names]
        return data


def big_micro(**options: Any) -> SyntheticImages:
    """A data set with 12x12 images and no image_size option: cannot be resized."""
    dataset = SyntheticImages(classes=(12, 8, 8), examples=20, image_size=12, seed=5)
    dataset.name = "big-micro"
    return dataset


class TinyBatchNorm(nn.Sequential):
    """One 3x3 convolution with batch norm: the smallest backbone whose test-time batch
    statistics matter."""

    def __init__(self, input_shape: Sequence[int] = (1, 8, 8)) -> None:
        channels, height, width = (int(d) for d in input_shape)
        super().__init__(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten())
        self.out_features = 4 * height * width


@metabench.hookimpl
def register_backbones(register: metabench.RegisterBackbone) -> None:
    register("tinybn", TinyBatchNorm, task_types={"classification"})


@metabench.hookimpl
def register_presets(register: metabench.RegisterPreset) -> None:
    register("tester2026-micro", TEST_PRESET)


@metabench.hookimpl
def register_datasets(register: metabench.RegisterDataset) -> None:
    register("other-micro", other_micro, task_types={"classification"})
    register("big-micro", big_micro, task_types={"classification"})


@pytest.fixture
def preset_plugin():
    """Register this module (and the compare tests' plugin: micro, flat) for one test."""
    import test_compare_plugin

    manager = get_plugin_manager()
    manager.register(test_compare_plugin, name="test_compare_plugin")
    manager.register(sys.modules[__name__], name="preset_plugin")
    return sys.modules[__name__]

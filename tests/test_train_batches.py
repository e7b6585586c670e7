"""Non-episodic training data: TrainBatches, AlgorithmSetup.train_batches, and how the runner
charges an algorithm that trains on mini-batches (uses_episodes = False)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from test_compare_plugin import compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench import AlgorithmSetup, MetabenchError, TrainBatches
from metabench.config import make_config
from metabench.episodes import EpisodeSampler
from metabench.plan import build_plan
from metabench.plugins import get_plugin_manager
from metabench.runner import RunContext, build_algorithm, run_cell
from metabench.session import build_datasets
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

TINY = {"datasets": "micro", "backbone": "flat", "shots": [1], "episodes": 6,
        "budget": "episodes:8", "val_episodes": 3, "val_points": 2}
DRAWN: dict[str, list[str]] = {}


def digest(*tensors: torch.Tensor) -> str:
    return hashlib.sha1(b"".join(t.contiguous().numpy().tobytes() for t in tensors)).hexdigest()


# --- the batch source --------------------------------------------------------------------------


def test_train_batches_are_the_same_for_the_same_seed_and_differ_across_seeds(tiny_dataset):
    first, second = TrainBatches(tiny_dataset, seed=3), TrainBatches(tiny_dataset, seed=3)
    other = TrainBatches(tiny_dataset, seed=4)
    for step in (0, 7, 30):
        images, labels = first.batch(step, 16)
        assert images.shape == (16, 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (16,) and labels.dtype == torch.int64
        assert digest(images, labels) == digest(*second.batch(step, 16))
        assert digest(images, labels) != digest(*other.batch(step, 16))
    # whatever was drawn before: a fresh source gives step 30 straight away
    assert digest(*TrainBatches(tiny_dataset, seed=3).batch(30, 16)) == digest(*first.batch(30, 16))


SUBPROCESS = """
import hashlib, sys
from metabench import TrainBatches
from metabench.data.synthetic import SyntheticImages
images, labels = TrainBatches(SyntheticImages(classes=(20, 8, 10), examples=20), seed=3).batch(30, 16)
print(hashlib.sha1(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest())
"""


def test_train_batches_are_the_same_in_another_process(tiny_dataset):
    done = subprocess.run([sys.executable, "-c", SUBPROCESS], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == digest(*TrainBatches(tiny_dataset, seed=3).batch(30, 16))


def test_an_epoch_of_batches_shows_every_image_once_labelled_with_its_class(tiny_dataset):
    batches = TrainBatches(tiny_dataset, seed=0)
    data = tiny_dataset.split("train")
    assert batches.num_classes == data.num_classes == 20 and batches.num_images == 400
    assert batches.class_names == data.class_names
    rows = np.concatenate([batches.rows(step, 16) for step in range(25)])  # 25 x 16 = 400
    assert sorted(rows.tolist()) == list(range(400))
    labels = torch.cat([batches.batch(step, 16)[1] for step in range(25)])
    assert torch.bincount(labels, minlength=20).tolist() == data.counts.tolist()
    images, labels = batches.batch(3, 16)
    expected_rows = batches.rows(3, 16)
    classes = np.searchsorted(data.offsets_np, expected_rows, side="right") - 1
    assert labels.tolist() == classes.tolist()
    torch.testing.assert_close(images, data.images[expected_rows].float() / 255)
    # the next epoch is a new permutation of the same images
    assert not np.array_equal(rows[:16], batches.rows(25, 16))
    assert sorted(np.concatenate([batches.rows(s, 16) for s in range(25, 50)]).tolist()) == \
        list(range(400))


def test_batches_are_consecutive_positions_of_one_stream(tiny_dataset):
    batches = TrainBatches(tiny_dataset, seed=1)
    across_epochs = batches.rows(13, 30)  # positions 390..419: the end of epoch 0, then epoch 1
    assert across_epochs.tolist() == np.concatenate(
        [batches.rows(39, 10), batches.rows(40, 10), batches.rows(41, 10)]).tolist()
    assert batches.drawn == 0  # rows() only says which images
    batches.batch(0, 5)
    batches.batch(1, 7)
    assert batches.drawn == 12


@pytest.mark.parametrize(("step", "size", "message"), [
    (-1, 4, "training batch step=-1 is invalid; expected an integer >= 0"),
    (0, 0, "training batch size=0 is invalid; expected an integer >= 1"),
    (1.5, 4, "training batch step=1.5 is invalid"),
])
def test_bad_batch_arguments_are_one_line_errors(tiny_dataset, step, size, message):
    with pytest.raises(MetabenchError, match=message) as error:
        TrainBatches(tiny_dataset).batch(step, size)
    assert "\n" not in str(error.value)


def test_the_batch_source_is_public_and_optional_in_the_setup():
    assert metabench.TrainBatches is TrainBatches and "TrainBatches" in metabench.__all__
    setup = AlgorithmSetup(torch.nn.Identity(), metabench.TaskSpec(), torch.device("cpu"))
    assert setup.train_batches is None


# --- the runner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawerConfig:
    batch_size: int = 16
    draw: bool = True
    uses_episodes: Any = False


class Drawer(ProtoNet):
    """Trains nothing: draws ``batch_size`` images per step from setup.train_batches and
    records them; predicts as a ProtoNet."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: DrawerConfig) -> None:
        super().__init__(setup, ProtoNetConfig())
        assert setup.train_batches is not None
        self.batches, self.config, self.steps = setup.train_batches, hparams, 0
        self.uses_episodes = hparams.uses_episodes
        self.name = "drawer"

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        assert len(batch) == 0 and list(batch) == []
        if self.config.draw:
            images, labels = self.batches.batch(self.steps, self.config.batch_size)
            DRAWN.setdefault(self.name, []).append(digest(images, labels))
        self.steps += 1
        return {"loss": 1.0}


class Drawer2(Drawer):
    def __init__(self, setup: metabench.AlgorithmSetup, hparams: DrawerConfig) -> None:
        super().__init__(setup, hparams)
        self.name = "drawer2"


class Drawers:
    @metabench.hookimpl
    def register_algorithms(self, register) -> None:
        register("drawer", Drawer, task_types={"classification"}, defaults=DrawerConfig())
        register("drawer2", Drawer2, task_types={"classification"}, defaults=DrawerConfig())


@pytest.fixture
def drawers(request):
    request.getfixturevalue("compare_plugin")
    DRAWN.clear()
    get_plugin_manager().register(Drawers(), name="drawers")


def context_for(**options: Any) -> tuple[RunContext, list]:
    plan = build_plan(make_config({**TINY, **options}))
    return RunContext(plan, torch.device("cpu"), build_datasets(plan)[0]), list(plan.cells)


@pytest.mark.usefixtures("drawers")
@pytest.mark.parametrize(("size", "steps", "images"), [
    (16, 40, 640),  # 8 episodes of 5 x (1 + 15) = 80 images: 640 images, 40 steps of 16
    (24, 27, 648),  # 640 / 24 = 26.7: the last step overshoots by 8 images (0.1 episode)
    (100, 7, 700),  # a step worth more than an episode
])
def test_an_episode_budget_charges_the_images_drawn(size, steps, images):
    context, (cell,) = context_for(algorithms="drawer", hparams=[f"drawer.batch_size={size}"])
    result = run_cell(cell, context)
    assert result.status == "ok", result.reason
    assert (result.steps, result.train_episodes) == (steps, 8)
    assert result.profile["train_images"] == images == len(DRAWN["drawer"]) * size
    assert result.profile["episodes_per_step"] == round(size / 80, 4)
    assert result.curve[-1]["episodes"] == 8
    assert result.curve[0]["step"] == -(-320 // size)  # the first validation: 4 episodes' worth


@pytest.mark.usefixtures("drawers")
def test_a_batch_trained_algorithm_gets_no_training_episodes(monkeypatch):
    splits: list[str] = []
    batch = EpisodeSampler.batch

    def watched(self, indices):
        splits.append(self.split)
        return batch(self, indices)

    monkeypatch.setattr(EpisodeSampler, "batch", watched)
    context, (cell,) = context_for(algorithms="drawer")
    assert run_cell(cell, context).status == "ok"
    assert "train" not in splits and {"validation", "test"} <= set(splits)


@pytest.mark.usefixtures("drawers")
def test_every_algorithm_of_a_cell_group_draws_the_same_batches():
    context, cells = context_for(algorithms="drawer,drawer2")
    for cell in cells:
        assert run_cell(cell, context).status == "ok"
    assert len(DRAWN["drawer"]) == 40 and DRAWN["drawer"] == DRAWN["drawer2"]


@pytest.mark.usefixtures("drawers")
def test_a_time_budget_reports_whole_episodes_drawn():
    context, (cell,) = context_for(algorithms="drawer", budget="time:0.3s")
    result = run_cell(cell, context)
    assert result.status == "ok" and result.steps > 0
    assert result.train_episodes == result.steps * 16 // 80
    assert result.profile["train_images"] == result.steps * 16


@pytest.mark.usefixtures("drawers")
@pytest.mark.parametrize(("override", "reason"), [
    ("drawer.draw=false", "meta_train_step drew no images from setup.train_batches at step 1; "
                          "uses_episodes=False says it trains on them"),
    ("drawer.uses_episodes=no", "algorithm uses_episodes='no'; expected True or False"),
])
def test_a_broken_batch_trained_algorithm_fails_its_cell(override, reason):
    context, (cell,) = context_for(algorithms="drawer", hparams=[override])
    result = run_cell(cell, context)
    assert result.status == "failed" and result.reason == reason


@pytest.mark.usefixtures("drawers")
def test_the_runner_builds_a_batch_source_for_classification_data_sets_only():
    context, (cell,) = context_for(algorithms="drawer")
    algorithm = build_algorithm(cell, context)
    assert isinstance(algorithm, Drawer) and algorithm.batches.num_classes == 12
    batches = context.train_batches(cell)
    assert isinstance(batches, TrainBatches) and batches.num_classes == 12
    regression, (sine,) = context_for(algorithms="maml", datasets="sinusoid", backbone="mlp")
    assert regression.train_batches(sine) is None

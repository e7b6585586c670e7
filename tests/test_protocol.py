"""TaskSpec validation (one-line errors naming the value and the limit), episodes and batches."""

from __future__ import annotations

import pytest
import torch

from metabench.config import Config
from metabench.data.base import ClassSplit, InMemoryDataset
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.protocol import Episode, EpisodeBatch, EpisodeId, TaskSpec


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("kwargs", "value", "limit"),
    [
        ({"ways": 1}, "ways=1", "ways >= 2"),
        ({"ways": -3}, "ways=-3", "ways >= 2"),
        ({"shots": 0}, "shots=0", "shots >= 1"),
        ({"queries": 0}, "queries=0", "queries >= 1"),
    ],
)
def test_spec_rejects_values_below_their_minimum(kwargs, value, limit):
    with pytest.raises(MetabenchError) as error:
        TaskSpec(**kwargs)
    message = one_line(error)
    assert value in message and limit in message


def test_unknown_task_type_is_rejected():
    with pytest.raises(MetabenchError, match=r"'ranking'.*classification, regression"):
        TaskSpec(task_type="ranking")


def test_ways_above_the_classes_of_the_split_is_rejected(tiny_dataset):
    with pytest.raises(MetabenchError) as error:
        EpisodeSampler(tiny_dataset, "validation", TaskSpec(ways=9, shots=1, queries=1))
    message = one_line(error)
    assert "ways=9" in message and "8 classes" in message and "'validation'" in message


def test_shots_plus_queries_above_the_examples_of_a_class_is_rejected():
    split = ClassSplit.from_groups(
        [torch.zeros(n, 1, 2, 2, dtype=torch.uint8) for n in (30, 12, 40)], ["a", "b", "c"]
    )
    dataset = InMemoryDataset("uneven", {"train": split})
    with pytest.raises(MetabenchError) as error:
        EpisodeSampler(dataset, "train", TaskSpec(ways=2, shots=5, queries=8))
    message = one_line(error)
    assert "5 + 8 = 13" in message and "12 examples per class" in message
    EpisodeSampler(dataset, "train", TaskSpec(ways=2, shots=5, queries=7))  # 12 fits


def test_regression_specs_ignore_ways():
    spec = TaskSpec(ways=1, shots=5, queries=10, task_type="regression")
    assert spec.label == "5shot"
    assert TaskSpec(ways=5, shots=1).label == "5w1s"


def test_unknown_split_is_rejected(tiny_dataset):
    with pytest.raises(MetabenchError, match=r"split 'val' .*train, validation, test"):
        EpisodeSampler(tiny_dataset, "val", TaskSpec())


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"episodes": 1}, "episodes=1"),
    ({"confidence": 1.0}, "confidence=1.0"),
])
def test_protocol_validation(kwargs, text):
    with pytest.raises(MetabenchError, match=text):
        Config(**kwargs)  # the protocol's numbers live in the comparison's Config


def test_batch_stacks_indexes_and_moves():
    identity = EpisodeId("d", "test", 0, 0)
    episodes = [
        Episode(torch.full((2, 3), float(i)), torch.tensor([0, 1]), torch.zeros(4, 3),
                torch.tensor([0, 0, 1, 1]), (i, i + 1), identity)
        for i in range(3)
    ]
    batch = EpisodeBatch.stack(episodes)
    assert len(batch) == 3 and batch.support_x.shape == (3, 2, 3)
    assert batch[2].classes == (2, 3) and torch.equal(batch[1].support_x, episodes[1].support_x)
    assert [e.classes for e in batch] == [(0, 1), (1, 2), (2, 3)]
    moved = episodes[0].to("cpu")
    assert moved.identity == identity and moved.split == "test" and moved.index == 0


def test_class_split_checks_its_offsets():
    with pytest.raises(MetabenchError, match="offsets end at 5 but there are 6 images"):
        ClassSplit(torch.zeros(6, 1, 2, 2), torch.tensor([0, 2, 5]), ["a", "b"])
    with pytest.raises(MetabenchError, match="3 offsets for 3 classes"):
        ClassSplit(torch.zeros(6, 1, 2, 2), torch.tensor([0, 2, 6]), ["a", "b", "c"])


def test_class_split_subset_keeps_each_class_images():
    groups = [torch.full((n, 1, 2, 2), k, dtype=torch.uint8) for k, n in enumerate((3, 5, 2))]
    split = ClassSplit.from_groups(groups, ["a", "b", "c"])
    picked = split.subset([2, 0])
    assert picked.class_names == ["c", "a"] and picked.counts.tolist() == [2, 3]
    assert picked.images[:2].unique().tolist() == [2] and picked.images[2:].unique().tolist() == [0]
    dense = ClassSplit.from_dense(torch.arange(12).reshape(3, 2, 1, 1, 2), ["x", "y", "z"])
    assert dense.subset([1]).images.flatten().tolist() == [4, 5, 6, 7]

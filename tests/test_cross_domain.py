"""The cross-domain protocol: meta-train and validate on one data set, test on another."""

from __future__ import annotations

import pytest
import torch
from preset_plugin import preset_plugin  # noqa: F401 (fixture)

import metabench
from metabench.config import make_config
from metabench.errors import MetabenchError
from metabench.plan import build_plan
from metabench.runner import TEST, TRAIN, VALIDATION, RunContext
from metabench.session import build_datasets

TINY = {"algorithms": ["protonet"], "backbone": "flat", "shots": [1], "queries": 5,
        "episodes": 10, "budget": "episodes:6", "val_episodes": 3, "val_points": 2,
        "progress": False}


def context(**options) -> tuple[RunContext, list]:
    plan = build_plan(make_config({k: v for k, v in {**TINY, **options}.items()
                                   if k != "progress"}))
    datasets, tests = build_datasets(plan)
    return RunContext(plan, torch.device("cpu"), datasets, test_datasets=tests), list(plan.cells)


def test_test_episodes_come_from_the_test_dataset(preset_plugin):  # noqa: F811
    run, cells = context(datasets=["micro"], test_dataset="other-micro")
    (cell,) = cells
    assert cell.test_dataset == "other-micro" and cell.key == "protonet/micro->other-micro/5w1sq5/seed0"
    sampler = run.sampler(cell, TEST, cell.spec)
    assert sampler.dataset is run.test_datasets["micro->other-micro"]
    test = sampler.batch(range(4))
    names = sampler.dataset.load_split(TEST).class_names
    assert {i.dataset for i in test.identities} == {"other-micro"}
    assert all(names[int(k)].startswith("other-") for classes in test.classes for k in classes)
    for split in (TRAIN, VALIDATION):
        batch = run.sampler(cell, split, cell.spec).batch(range(4))
        assert {i.dataset for i in batch.identities} == {"micro"}


def test_the_same_test_data_set_gives_the_same_episodes_whatever_trained(preset_plugin):  # noqa: F811
    run, cells = context(datasets=["micro", "other-micro"], test_dataset="other-micro")
    cross, same = (next(c for c in cells if c.dataset == name) for name in ("micro", "other-micro"))
    assert same.test_dataset == "" and cross.test_dataset == "other-micro"
    a = run.sampler(cross, TEST, cross.spec).batch(range(3))
    b = run.sampler(same, TEST, same.spec).batch(range(3))
    assert a.classes == b.classes and torch.equal(a.query_x, b.query_x)


def test_cross_domain_cells_are_stored_and_kept_apart(tmp_path, preset_plugin):  # noqa: F811
    metabench.compare(**TINY, datasets=["micro", "other-micro"], test_dataset="other-micro",
                      out=str(tmp_path))
    cells = metabench.load_cells(tmp_path)
    assert sorted(zip(cells["dataset"], cells["test_dataset"], strict=True)) == [
        ("micro", "other-micro"), ("other-micro", "other-micro")]
    table = metabench.leaderboard(tmp_path)
    assert sorted(table["setting"]) == ["micro->other-micro 5w1s", "other-micro 5w1s"]
    assert table["group"].nunique() == 2  # never pooled


def test_a_test_data_set_is_resized_to_the_training_shape(preset_plugin):  # noqa: F811
    run, _ = context(datasets=["micro"], test_dataset="other-micro",
                     dataset_options={"other-micro": {"image_size": 12}})
    assert tuple(run.test_datasets["micro->other-micro"].input_shape) == (1, 8, 8)


def test_a_test_data_set_that_cannot_be_resized_is_refused(run_cli, tmp_path, preset_plugin):  # noqa: F811
    result = run_cli("--plugin", "preset_plugin", "--plugin", "test_compare_plugin", "compare",
                     "--datasets", "micro", "--test-dataset", "big-micro", "--backbone", "flat",
                     "--algorithms", "protonet", "--out", str(tmp_path), "--no-progress")
    assert result.code == 2
    assert result.err.strip() == (
        "error: test data set 'big-micro' has input shape 1x12x12 but 'micro' trains on 1x8x8; "
        "expected the same shape ('big-micro' cannot be resized to it)")
    assert not (tmp_path / "metabench.sqlite").exists()


def test_a_regression_test_data_set_for_classification_is_refused(preset_plugin):  # noqa: F811
    with pytest.raises(MetabenchError, match="test_dataset 'sinusoid' is a regression data set"):
        build_plan(make_config({**{k: v for k, v in TINY.items() if k != "progress"},
                                "datasets": ["micro"], "test_dataset": "sinusoid"}))

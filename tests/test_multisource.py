"""Multi-source training with per-source tests, Meta-Album folders, and variable ways."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from preset_plugin import preset_plugin  # noqa: F401 (fixture)

import metabench
import metabench.runner
from metabench.config import make_config
from metabench.data import build_dataset
from metabench.data.metaalbum import export_metaalbum
from metabench.data.synthetic import SyntheticImages
from metabench.errors import MetabenchError
from metabench.multisource import MultiSource
from metabench.plan import build_plan
from metabench.reports.html import render_report
from metabench.reports.leaderboard import build_report_data
from metabench.reports.per_source import episode_shapes, episodes_figure, per_source_tables
from metabench.runner import TEST, TRAIN, RunContext
from metabench.session import build_datasets

TINY = {"algorithms": ["protonet"], "backbone": "flat", "episodes": 6, "budget": "episodes:3",
        "val_episodes": 2, "val_points": 1, "ways": "any", "shots": "any"}


def write_folder(root: Path, classes: dict[str, int], size: int = 8,
                 info: dict | None = None, columns: tuple[str, str] = ("FILE_NAME", "CATEGORY")
                 ) -> Path:
    """A Meta-Album-format folder: images/ and labels.csv (with Meta-Album's extra column)."""
    (root / "images").mkdir(parents=True)
    rows = []
    for k, (category, count) in enumerate(classes.items()):
        for i in range(count):
            name = f"{category}_{i}.png"
            pixels = np.full((size, size, 3), (k * 37 + i) % 256, dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(root / "images" / name)
            rows.append((name, category, "NAN"))
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*columns, "SUPER_CATEGORY"])
        writer.writerows(rows)
    if info is not None:
        (root / "info.json").write_text(__import__("json").dumps(info))
    return root


def test_a_metaalbum_folder_is_read_with_its_categories(tmp_path):
    classes = {f"bird{k:02d}": 3 + k % 4 for k in range(20)}
    root = write_folder(tmp_path / "BRD", classes)
    dataset = build_dataset("metaalbum", data_root=root, image_size=8, cache_dir=tmp_path)
    splits = {s: dataset.split(s) for s in ("train", "validation", "test")}
    assert [splits[s].num_classes for s in splits] == [14, 3, 3]  # 70 / 15 / 15
    names = {n: s for s, data in splits.items() for n in data.class_names}
    assert set(names) == set(classes)
    train = splits["train"]
    assert dict(zip(train.class_names, train.counts_np.tolist(), strict=True)) == {
        n: classes[n] for n in train.class_names}
    assert train.images.shape[1:] == (3, 8, 8)
    described = metabench.data.describe_datasets(names=["metaalbum"], data_root=root,
                                                 cache_dir=tmp_path)[0]
    assert "70/15/15 seeded class split" in described["source"]


def test_metaalbum_reads_info_json_columns_and_picks_a_source(tmp_path):
    info = {"image_column_name": "file", "category_column_name": "label"}
    write_folder(tmp_path / "parent" / "A", {"x": 2, "y": 2}, info=info, columns=("file", "label"))
    write_folder(tmp_path / "parent" / "B", {"z": 3, "w": 2})
    parent = tmp_path / "parent"
    with pytest.raises(MetabenchError, match=r"holds 2 data sets \(A, B\); pick one"):
        build_dataset("metaalbum", data_root=parent, fractions="1,0,0", cache_dir=tmp_path).split("train")
    one = build_dataset("metaalbum", data_root=parent, source="A", fractions="1,0,0",
                        image_size=8, cache_dir=tmp_path)
    assert sorted(one.split("train").class_names) == ["x", "y"]
    pooled = build_dataset("metaalbum", data_root=parent, source="all", fractions="1,0,0",
                           image_size=8, cache_dir=tmp_path)
    assert sorted(pooled.split("train").class_names) == ["A/x", "A/y", "B/w", "B/z"]


def test_a_labels_file_without_the_category_column_is_refused(tmp_path):
    root = write_folder(tmp_path / "X", {"a": 2}, columns=("FILE_NAME", "LABEL"))
    with pytest.raises(MetabenchError, match="has no column CATEGORY; its columns are FILE_NAME"):
        build_dataset("metaalbum", data_root=root, cache_dir=tmp_path).split("train")


def test_maml_on_variable_ways_is_skipped_with_its_reason(preset_plugin):  # noqa: F811
    plan = build_plan(make_config({**TINY, "algorithms": ["maml", "protonet", "protomaml"],
                                   "datasets": ["glyphs"]}))
    reasons = {cell.algorithm: plan.skip_reason(cell) for cell in plan.cells}
    assert reasons["maml"] == ("maml has a fixed number of ways (it registers without "
                               "variable_ways=True): any-way any-shot episodes vary it")
    assert reasons["protonet"] == reasons["protomaml"] == ""
    assert plan.cells[0].spec.label == "any" and plan.cells[0].key.endswith("/anyq10/seed0")


def test_multi_source_episodes_come_from_each_source(preset_plugin):  # noqa: F811
    plan = build_plan(make_config({**TINY, "datasets": ["micro+other-micro"]}))
    datasets, tests = build_datasets(plan)
    assert isinstance(datasets["micro+other-micro"], MultiSource)
    context = RunContext(plan, torch.device("cpu"), datasets, test_datasets=tests)
    cell = plan.cells[0]
    sources = [e.identity.dataset for e in context.sampler(cell, TRAIN, cell.spec).batch(range(40))]
    assert set(sources) == {"micro", "other-micro"} and 8 <= sources.count("micro") <= 32
    by_test = {c.tested_on: context.sampler(c, TEST, c.spec).batch(range(3)) for c in plan.cells}
    assert {e.identity.dataset for e in by_test["other-micro"]} == {"other-micro"}
    assert {e.identity.dataset for e in by_test["micro"]} == {"micro"}


def test_a_multi_source_run_trains_on_two_sources_and_tests_on_three(
        tmp_path, preset_plugin):  # noqa: F811
    held_out = export_metaalbum(SyntheticImages(classes=(40, 0, 0), examples=6, image_size=8,
                                                seed=3), tmp_path / "patterns", ["train"])
    options = {"metaalbum": {"data_root": str(held_out), "color": "grey"}}
    metabench.compare(**TINY, datasets=["micro+other-micro"], test_dataset="metaalbum",
                      dataset_options=options, out=str(tmp_path), cache_dir=str(tmp_path),
                      progress=False)
    metabench.compare(**{**TINY, "algorithms": ["protonet"]}, datasets=["micro"],
                      out=str(tmp_path), progress=False)
    cells = metabench.load_cells(tmp_path)
    assert sorted(zip(cells["dataset"], cells["test_dataset"], strict=True)) == [
        ("micro", "micro"), ("micro+other-micro", "metaalbum"), ("micro+other-micro", "micro"),
        ("micro+other-micro", "other-micro")]
    multi = cells[cells["dataset"] == "micro+other-micro"]
    assert multi["steps"].nunique() == 1 and (multi["status"] == "ok").all()
    assert multi["ways"].tolist() == [0, 0, 0] and multi["shots"].tolist() == [0, 0, 0]
    table = metabench.leaderboard(tmp_path)
    assert sorted(table["setting"]) == [
        "micro any", "micro+other-micro->metaalbum any", "micro+other-micro->micro any",
        "micro+other-micro->other-micro any"]
    assert table["group"].nunique() == 4  # a multi-source cell is never pooled with another
    data = build_report_data([tmp_path])
    ((setting, wide),) = per_source_tables(data.table)
    assert setting == "micro+other-micro any"
    assert list(wide.columns) == ["algorithm", "micro", "other-micro", "metaalbum (held out)",
                                  "avg rank"]
    html = render_report(data)
    assert "Per source: micro+other-micro any" in html and "metaalbum (held out)" in html
    shapes = episode_shapes(data.cells)
    assert sorted(shapes) == ["metaalbum", "micro", "other-micro"]
    assert all(len(ways) == TINY["episodes"] and min(ways) >= 5 for ways, _ in shapes.values())
    assert episodes_figure(data) is not None


def test_the_training_is_shared_by_the_cells_of_a_training_group(preset_plugin):  # noqa: F811
    plan = build_plan(make_config({**TINY, "datasets": ["micro+other-micro"]}))
    datasets, tests = build_datasets(plan)
    context = RunContext(plan, torch.device("cpu"), datasets, test_datasets=tests)
    first, second = (metabench.runner.run_cell(cell, context) for cell in plan.cells)
    assert first.curve == second.curve and first.steps == second.steps
    assert second.profile["trained_in"] == first.cell.key
    alone = metabench.runner.run_cell(plan.cells[1], RunContext(
        plan, torch.device("cpu"), datasets, test_datasets=tests))
    def numbers(curve: list[dict]) -> list[dict]:
        return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]

    assert numbers(alone.curve) == numbers(second.curve)  # trained afresh: the same (CPU)
    assert [e.accuracy for e in alone.episodes] == [e.accuracy for e in second.episodes]


def test_each_data_set_of_a_metaalbum_parent_is_a_source(tmp_path):
    parent = tmp_path / "album"
    for name in ("BRD", "INS"):
        write_folder(parent / name, {f"{name.lower()}{k:02d}": 4 for k in range(20)})
    options = {"metaalbum": {"data_root": str(parent), "fractions": "0.5,0.25,0.25",
                             "image_size": 8}}
    plan = build_plan(make_config({**TINY, "algorithms": ["protonet"], "backbone": "conv4",
                                   "datasets": ["metaalbum:BRD+metaalbum:INS"],
                                   "dataset_options": options, "cache_dir": str(tmp_path)}))
    assert sorted(c.tested_on for c in plan.cells) == ["metaalbum:BRD", "metaalbum:INS"]
    datasets, tests = build_datasets(plan)
    context = RunContext(plan, torch.device("cpu"), datasets, test_datasets=tests)
    cell = plan.cells[0]
    batch = context.sampler(cell, TRAIN, cell.spec).batch(range(30))
    assert {e.identity.dataset for e in batch} == {"metaalbum:BRD", "metaalbum:INS"}
    brd = tests["metaalbum:BRD+metaalbum:INS->metaalbum:BRD"]
    assert all(n.startswith("brd") for n in brd.split("test").class_names)

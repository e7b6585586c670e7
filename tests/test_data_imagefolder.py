"""imagefolder: a tiny folder of PNGs, resizing, splits by seed and by split file, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metabench.data import build_dataset
from metabench.data.imagefolder import ImageFolder
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.protocol import SPLITS, TaskSpec

CLASSES = [f"class{k:02d}" for k in range(10)]


def make_folder(root: Path, classes: list[str] = CLASSES, per_class: int = 6, size=(20, 16)) -> Path:
    """One sub-folder per class of small RGB PNGs whose red channel encodes the class."""
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            pixels[..., 0] = 20 * k
            pixels[..., 1] = 30 * i
            Image.fromarray(pixels).save(root / name / f"img{i}.png")
    (root / ".hidden").mkdir()
    (root / CLASSES[0] / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "images")


def class_sets(dataset: ImageFolder) -> dict[str, set[str]]:
    return {s: set(dataset.split(s).class_names) for s in SPLITS}


def test_seeded_split_is_class_disjoint_and_covers_every_class(folder, tmp_path):
    dataset = ImageFolder(folder, image_size=8, cache_dir=tmp_path / "cache")
    sets = class_sets(dataset)
    assert [len(sets[s]) for s in SPLITS] == [6, 2, 2]  # 0.64 / 0.16 / 0.20 of 10
    assert set().union(*sets.values()) == set(CLASSES)
    assert not (sets["train"] & sets["test"]) and not (sets["validation"] & sets["test"])
    again = class_sets(ImageFolder(folder, image_size=8, cache_dir=tmp_path / "cache"))
    other = class_sets(ImageFolder(folder, image_size=8, seed=5, cache_dir=tmp_path / "cache"))
    assert again == sets and other != sets


def test_images_are_resized_and_grouped_by_class(folder, tmp_path):
    dataset = ImageFolder(folder, image_size=8, cache_dir=tmp_path)
    train = dataset.split("train")
    assert train.images.shape[1:] == (3, 8, 8) and train.images.dtype.is_floating_point is False
    assert dataset.input_shape == (3, 8, 8) and train.min_examples == 6
    for k, name in enumerate(train.class_names):
        block = train.images[train.offsets[k] : train.offsets[k + 1]]
        assert block[:, 0].unique().tolist() == [20 * CLASSES.index(name)]
    episode = EpisodeSampler(dataset, "train", TaskSpec(ways=3, shots=2, queries=2)).episode(0)
    assert episode.support_x.shape == (6, 3, 8, 8)


def test_default_size_is_84_and_grey_and_keep_options(folder, tmp_path):
    assert ImageFolder(folder, cache_dir=tmp_path).split("test").images.shape[1:] == (3, 84, 84)
    grey = ImageFolder(folder, image_size=8, color="grey", cache_dir=tmp_path).split("test")
    assert grey.images.shape[1:] == (1, 8, 8)
    kept = ImageFolder(folder, image_size="keep", cache_dir=tmp_path).split("test")
    assert kept.images.shape[1:] == (3, 16, 20)


def test_keep_needs_images_of_one_size(folder, tmp_path):
    Image.new("RGB", (5, 5)).save(folder / CLASSES[3] / "odd.png")
    with pytest.raises(MetabenchError, match=r"odd\.png is 5 wide.*image_size=N"):
        ImageFolder(folder, image_size="keep", cache_dir=tmp_path).split("train")


def test_json_split_file_by_class_and_by_split(folder, tmp_path):
    by_class = tmp_path / "split.json"
    by_class.write_text(json.dumps({"class00": "test", "class01": "train", "class02": "train",
                                    "class03": "validation"}))
    sets = class_sets(ImageFolder(folder, image_size=8, split_file=by_class, cache_dir=tmp_path))
    assert sets == {"train": {"class01", "class02"}, "validation": {"class03"}, "test": {"class00"}}
    by_split = tmp_path / "lists.json"
    by_split.write_text(json.dumps({"train": ["class05"], "test": ["class06", "class07"]}))
    sets = class_sets(ImageFolder(folder, image_size=8, split_file=by_split, cache_dir=tmp_path))
    assert sets == {"train": {"class05"}, "validation": set(), "test": {"class06", "class07"}}


def test_csv_split_file(folder, tmp_path):
    split_file = tmp_path / "split.csv"
    split_file.write_text("class,split\nclass04,train\nclass08, test\n\nclass09,validation\n")
    sets = class_sets(ImageFolder(folder, image_size=8, split_file=split_file, cache_dir=tmp_path))
    assert sets == {"train": {"class04"}, "validation": {"class09"}, "test": {"class08"}}


@pytest.mark.parametrize(("text", "message"), [
    ("class00,training\n", "split 'training'"),
    ("nope,train\n", "class 'nope', which has no folder"),
    ("class00,train,extra\n", "3 fields; expected class,split"),
])
def test_bad_split_files_are_reported(folder, tmp_path, text, message):
    split_file = tmp_path / "split.csv"
    split_file.write_text(text)
    with pytest.raises(MetabenchError, match=message):
        ImageFolder(folder, image_size=8, split_file=split_file, cache_dir=tmp_path).split("train")


def test_corrupt_image_is_named_and_no_cache_is_left(folder, tmp_path):
    bad = folder / CLASSES[2] / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    cache = tmp_path / "cache"
    with pytest.raises(MetabenchError, match=r"broken\.png"):
        ImageFolder(folder, image_size=8, cache_dir=cache).split("train")
    assert not cache.exists() or not list(cache.iterdir())


def test_missing_or_empty_folders_are_reported(tmp_path):
    with pytest.raises(MetabenchError, match="no --data-root"):
        ImageFolder().split("train")
    with pytest.raises(MetabenchError, match="is not a folder"):
        ImageFolder(tmp_path / "absent").split("train")
    (tmp_path / "empty-class").mkdir()
    with pytest.raises(MetabenchError, match="empty-class holds no images"):
        ImageFolder(tmp_path, cache_dir=tmp_path).split("train")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"image_size": 0}, "image_size=0"),
    ({"image_size": "big"}, "image_size='big'"),
    ({"fractions": (0.5, 0.5, 0.5)}, "sum to 1"),
    ({"fractions": "0.8,0.2"}, "three non-negative numbers"),
    ({"color": "cmyk"}, "color 'cmyk'"),
])
def test_bad_options_are_reported(kwargs, message):
    with pytest.raises(MetabenchError, match=message):
        ImageFolder(**kwargs)


def test_changed_folder_is_decoded_afresh(folder, tmp_path):
    cache = tmp_path / "cache"
    before = ImageFolder(folder, image_size=8, cache_dir=cache)
    assert sum(before.split(s).num_classes for s in SPLITS) == len(CLASSES)
    (folder / "zeta").mkdir()
    Image.new("RGB", (20, 16)).save(folder / "zeta" / "a.png")
    after = ImageFolder(folder, image_size=8, cache_dir=cache)
    assert sum(after.split(s).num_classes for s in SPLITS) == len(CLASSES) + 1
    assert len(list(cache.glob("*.npz"))) == 2


def test_build_dataset_converts_command_line_strings(folder, tmp_path):
    dataset = build_dataset("imagefolder", data_root=folder, cache_dir=tmp_path, image_size="12",
                            fractions="0.5,0.3,0.2", seed="3", download=True)
    assert dataset.image_size == 12 and dataset.fractions == (0.5, 0.3, 0.2) and dataset.seed == 3
    assert build_dataset("imagefolder", data_root=folder, image_size="keep").image_size is None

"""The embedded glyph set: size, splits by script, cache reuse, atomic writes, determinism."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metabench import registry
from metabench.data import glyphs
from metabench.data.glyphs import EXAMPLES, GlyphArrays, Glyphs
from metabench.data.glyphs_distort import Distortion
from metabench.data.glyphs_render import MIN_FONTS, SPLIT_GROUPS
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.protocol import SPLITS, TaskSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Glyphs:
    """The full set, built once into a temporary cache folder."""
    dataset = Glyphs(cache_dir=tmp_path_factory.mktemp("glyphs-full"))
    dataset.arrays  # noqa: B018
    return dataset


def tiny_arrays(value: int = 7) -> GlyphArrays:
    """A stand-in for a build: three classes, one per split."""
    images = np.full((3, EXAMPLES, 28, 28), value, dtype=np.uint8)
    return GlyphArrays(
        images=images,
        codepoints=np.array([0x41, 0x3B1, 0x416], dtype=np.int32),
        splits=np.array([0, 1, 2], dtype=np.int8),
        fonts=np.zeros((3, EXAMPLES), dtype=np.int8),
    )


@pytest.fixture
def fake_builder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the builder by a fast stand-in; the list counts its calls."""
    calls: list[int] = []

    def build(*args, **kwargs) -> GlyphArrays:
        calls.append(1)
        return tiny_arrays()

    monkeypatch.setattr(glyphs, "build_glyphs", build)
    return calls


def group(class_name: str) -> str:
    return class_name.split(":U+")[0]


def test_has_at_least_1000_classes_in_three_splits(full):
    classes = {split: full.split(split).num_classes for split in SPLITS}
    assert sum(classes.values()) >= 1000
    assert all(count >= 100 for count in classes.values()), classes


def test_every_class_has_20_grey_28x28_examples(full):
    for split in SPLITS:
        data = full.split(split)
        assert data.images.dtype == torch.uint8
        assert tuple(data.images.shape[1:]) == (1, 28, 28)
        assert set(data.counts.tolist()) == {EXAMPLES}


def test_strokes_are_bright_on_a_dark_background(full):
    images = full.arrays.images
    border = np.concatenate([images[:, :, 0], images[:, :, -1], images[:, :, :, 0]], axis=-1)
    assert border.mean() < 10
    assert (images.reshape(len(images), EXAMPLES, -1).max(axis=-1) > 200).mean() > 0.99


def test_splits_are_disjoint_by_script_or_block(full):
    groups = {split: {group(name) for name in full.split(split).class_names} for split in SPLITS}
    for split in SPLITS:
        assert groups[split] <= set(SPLIT_GROUPS[split]), groups[split]
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert groups["test"] == {"Cyrl", "Armn", "Geor", "Laoo"}
    names = [name for split in SPLITS for name in full.split(split).class_names]
    assert len(names) == len(set(names))


def test_look_alikes_of_training_characters_are_not_test_classes(full):
    test_names = set(full.split("test").class_names)
    assert "Latn:U+0041" in full.split("train").class_names  # Latin A
    assert "Cyrl:U+0410" not in test_names  # Cyrillic A, drawn like Latin A
    assert "Cyrl:U+0416" in test_names  # Cyrillic Zhe has no look-alike


def test_each_class_is_drawn_from_several_fonts(full):
    fonts_per_class = [len(set(row.tolist())) for row in full.arrays.fonts]
    assert min(fonts_per_class) >= MIN_FONTS


def test_examples_of_a_class_differ(full):
    images = full.arrays.images.reshape(len(full.arrays.codepoints), EXAMPLES, -1)
    distinct = [len({row.tobytes() for row in examples}) for examples in images[::50]]
    assert set(distinct) == {EXAMPLES}


def test_episodes_sample_from_the_test_split(full):
    episode = EpisodeSampler(full, "test", TaskSpec(ways=5, shots=1, queries=15), seed=0).episode(3)
    assert episode.support_x.shape == (5, 1, 28, 28)
    assert episode.query_x.shape == (75, 1, 28, 28)
    assert float(episode.query_x.min()) >= 0.0 and float(episode.query_x.max()) <= 1.0


def test_registered_as_a_dataset():
    entry = registry.get("dataset", "glyphs")
    assert entry.factory is Glyphs
    assert entry.plugin == "metabench.data.glyphs"


def test_second_construction_reads_the_cache(full, monkeypatch):
    path = full.cache_path
    mtime = path.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(glyphs, "build_glyphs", refuse)
    again = Glyphs(cache_dir=path.parent)
    assert np.array_equal(again.arrays.images, full.arrays.images)
    assert again.build_seconds is None
    assert path.stat().st_mtime_ns == mtime


def test_cache_folder_from_argument_env_var_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path / "env"))
    assert Glyphs().cache_path.parent == tmp_path / "env"
    assert Glyphs(cache_dir=tmp_path / "arg").cache_path.parent == tmp_path / "arg"
    monkeypatch.delenv("METABENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Glyphs().cache_path.parent == tmp_path / "home" / ".cache" / "metabench"


def test_cache_name_depends_on_the_configuration(tmp_path):
    paths = {
        Glyphs(cache_dir=tmp_path).cache_path,
        Glyphs(cache_dir=tmp_path, seed=1).cache_path,
        Glyphs(cache_dir=tmp_path, max_classes_per_split=3).cache_path,
    }
    assert len(paths) == 3


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "glyphs.npz"

    def half_written(stream, **arrays):
        stream.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(glyphs.np, "savez_compressed", half_written)
    with pytest.raises(MetabenchError, match="No space left on device") as error:
        glyphs.write_cache(path, tiny_arrays(), "{}")
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_an_existing_cache_in_one_step(tmp_path):
    path = tmp_path / "glyphs.npz"
    glyphs.write_cache(path, tiny_arrays(1), "{}")
    glyphs.write_cache(path, tiny_arrays(2), "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["glyphs.npz"]
    assert int(glyphs.read_cache(path, "{}").images[0, 0, 0, 0]) == 2


def test_corrupt_cache_is_rebuilt(tmp_path, fake_builder):
    Glyphs(cache_dir=tmp_path, max_classes_per_split=1).arrays  # noqa: B018
    path = Glyphs(cache_dir=tmp_path, max_classes_per_split=1).cache_path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    rebuilt = Glyphs(cache_dir=tmp_path, max_classes_per_split=1)
    assert rebuilt.split("test").num_classes == 1
    assert len(fake_builder) == 2
    assert glyphs.read_cache(path, '{"not": "this config"}') is None
    assert glyphs.read_cache(path, _config_text(rebuilt)) is not None


def test_cache_from_another_configuration_is_rebuilt(tmp_path, fake_builder):
    dataset = Glyphs(cache_dir=tmp_path, max_classes_per_split=1)
    glyphs.write_cache(dataset.cache_path, tiny_arrays(), '{"format": 0}')
    dataset.arrays  # noqa: B018
    assert len(fake_builder) == 1


def test_unwritable_cache_folder_is_a_one_line_error(tmp_path, fake_builder):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(MetabenchError, match="cannot write the glyphs cache") as error:
        Glyphs(cache_dir=blocker / "cache").arrays  # noqa: B018
    assert str(blocker) in str(error.value) and "\n" not in str(error.value)


def test_bad_class_limit_is_a_clear_error():
    with pytest.raises(MetabenchError, match="max_classes_per_split=0"):
        Glyphs(max_classes_per_split=0)


@pytest.mark.parametrize(
    ("field", "value"), [("scale", (1.1, 0.8)), ("scale", (0.0, 1.0)), ("stroke_radius", (2, -1))]
)
def test_bad_distortion_is_a_clear_error(field, value):
    with pytest.raises(MetabenchError, match=field):
        Distortion(**{field: value})


def test_builds_are_identical_across_folders_and_thread_counts(full, tmp_path):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = Glyphs(cache_dir=tmp_path / "a", max_classes_per_split=4).arrays
        torch.set_num_threads(2)
        second = Glyphs(cache_dir=tmp_path / "b", max_classes_per_split=4).arrays
    finally:
        torch.set_num_threads(threads)
    assert len(first.codepoints) == 12
    for name in ("images", "codepoints", "splits", "fonts"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    rows = [int(np.flatnonzero(full.arrays.codepoints == c)[0]) for c in first.codepoints]
    assert np.array_equal(full.arrays.images[rows], first.images)  # a reduced build is a subset


def test_another_seed_gives_other_images(tmp_path):
    first = Glyphs(cache_dir=tmp_path, max_classes_per_split=1).arrays
    second = Glyphs(cache_dir=tmp_path, max_classes_per_split=1, seed=1).arrays
    assert np.array_equal(first.codepoints, second.codepoints)
    assert not np.array_equal(first.images, second.images)


def _config_text(dataset: Glyphs) -> str:
    return json.dumps(dataset.config, sort_keys=True)


def _calibration_module():
    path = REPO / "benchmarks" / "glyphs_calibration.py"
    if str(path.parent) not in sys.path:  # the script imports its neighbour _shared
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("glyphs_calibration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_calibration_random_below_half_trained_between_80_and_93(tmp_path):
    calibration = _calibration_module()
    result = calibration.calibrate(
        steps=calibration.STEPS_IN_TWO_MINUTES, episodes=600, cache_dir=tmp_path,
        threads=min(2, os.cpu_count() or 1), specs=(TaskSpec(ways=5, shots=1, queries=15),),
    )
    assert result["random"]["5w1s"]["accuracy"] < 0.50, result
    assert 0.80 <= result["trained"]["5w1s"]["accuracy"] <= 0.93, result

"""Omniglot: the real zips (where present), fake zips and folders, errors, cache, download."""

from __future__ import annotations

import functools
import http.server
import io
import json
import re
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metabench.data import build_dataset, omniglot
from metabench.data.download import sha256_of
from metabench.data.omniglot import LAKE_VALIDATION_ALPHABETS, Omniglot
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.protocol import SPLITS, TaskSpec

BACKGROUND = {f"Alpha{a}": 2 for a in range(7)}  # 7 alphabets x 2 characters
EVALUATION = {"Beta": 3, "Gamma": 1}
PER_CHARACTER = 4


def glyph_png(seed: int) -> bytes:
    """A 105x105 black-on-white binary PNG, like Omniglot's."""
    rng = np.random.default_rng(seed)
    pixels = np.ones((105, 105), dtype=bool)
    pixels[rng.integers(0, 80) :][:, 10:30] = False
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_files(part: str, alphabets: dict[str, int]) -> dict[str, bytes]:
    """Omniglot-style member names (character10 after character2) -> PNG bytes."""
    files = {}
    for alphabet, characters in alphabets.items():
        for c in (2, 10, 1)[:characters]:
            for drawer in range(1, PER_CHARACTER + 1):
                name = f"{part}/{alphabet}/character{c:02d}/{c:04d}_{drawer:02d}.png"
                files[name] = glyph_png(zlib.crc32(name.encode()))
    return files


def write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "omniglot"
    root.mkdir()
    write_zip(root / "images_background.zip", fake_files("images_background", BACKGROUND))
    write_zip(root / "images_evaluation.zip", fake_files("images_evaluation", EVALUATION))
    return root


def classes(dataset: Omniglot) -> dict[str, int]:
    return {split: dataset.split(split).num_classes for split in SPLITS}


def test_fake_zips_give_the_lake_split_by_alphabet(fake_root, tmp_path):
    dataset = Omniglot(fake_root, split="lake", cache_dir=tmp_path / "cache")
    assert classes(dataset) == {"train": 4, "validation": 10, "test": 4}
    train = dataset.split("train")
    assert train.images.shape[1:] == (1, 28, 28) and train.min_examples == PER_CHARACTER
    names = {s: set(dataset.split(s).class_names) for s in SPLITS}
    assert not (names["train"] & names["validation"]) and not (names["train"] & names["test"])
    assert {n.split("/")[0] for n in names["test"]} == {"Beta", "Gamma"}
    assert dataset.split("test").class_names[:3] == [
        "Beta/character01", "Beta/character02", "Beta/character10"]


def test_strokes_are_bright_on_dark(fake_root, tmp_path):
    images = Omniglot(fake_root, split="lake", cache_dir=tmp_path).split("test").images
    assert images.dtype.is_floating_point is False
    assert float(images.float().mean()) < 128  # mostly background, now dark
    assert int(images.max()) == 255


def test_folders_read_like_zips(fake_root, tmp_path):
    folders = tmp_path / "unzipped"
    for part in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(fake_root / f"{part}.zip") as archive:
            archive.extractall(folders)
    from_zips = Omniglot(fake_root, split="lake", cache_dir=tmp_path / "a").split("test")
    from_folders = Omniglot(folders, split="lake", cache_dir=tmp_path / "b").split("test")
    assert from_zips.class_names == from_folders.class_names
    assert (from_zips.images == from_folders.images).all()


def test_rotations_add_three_classes_per_character(fake_root, tmp_path):
    plain = Omniglot(fake_root, split="lake", cache_dir=tmp_path).split("test")
    rotated = Omniglot(fake_root, split="lake", rotations=True, cache_dir=tmp_path).split("test")
    assert rotated.num_classes == 4 * plain.num_classes
    quarter = rotated.class_names.index(plain.class_names[0] + "/rot90")
    first = rotated.images[rotated.offsets[quarter]]
    assert (first == plain.images[0].rot90(1, dims=(-2, -1))).all()


def test_cache_is_written_once_then_reused(fake_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    Omniglot(fake_root, split="lake", cache_dir=cache).split("test")
    assert len(list(cache.glob("omniglot-*.npz"))) == 1
    from metabench.data import omniglot

    monkeypatch.setattr(omniglot, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
    assert Omniglot(fake_root, split="lake", cache_dir=cache).split("train").num_classes == 4


def test_cache_dir_defaults_to_the_environment_variable(fake_root, tmp_path, monkeypatch):
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path / "env-cache"))
    Omniglot(fake_root, split="lake").split("test")
    assert list((tmp_path / "env-cache").glob("omniglot-*.npz"))


def test_missing_data_names_the_path_the_files_and_the_remedy(tmp_path):
    with pytest.raises(MetabenchError) as error:
        Omniglot(tmp_path, cache_dir=tmp_path).split("train")
    message = str(error.value)
    assert str(tmp_path) in message and "images_background.zip" in message
    assert "--download" in message and "github.com/brendenlake/omniglot" in message
    with pytest.raises(MetabenchError, match="omniglot needs --data-root"):
        Omniglot(None).split("train")


def test_corrupt_image_names_its_path_and_leaves_no_cache(fake_root, tmp_path):
    files = fake_files("images_evaluation", EVALUATION)
    bad = sorted(files)[3]
    files[bad] = b"not a png"
    write_zip(fake_root / "images_evaluation.zip", files)
    cache = tmp_path / "cache"
    with pytest.raises(MetabenchError, match=re.escape(bad)):
        Omniglot(fake_root, split="lake", cache_dir=cache).split("test")
    assert not cache.exists() or not list(cache.iterdir())


def test_broken_zip_is_reported(fake_root, tmp_path):
    (fake_root / "images_background.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(MetabenchError, match=r"images_background\.zip is not a readable zip"):
        Omniglot(fake_root, split="lake", cache_dir=tmp_path).split("test")


def test_unknown_split_scheme_is_rejected():
    with pytest.raises(MetabenchError, match=r"'lakes'.*vinyals, shuffled, nichol, lake"):
        Omniglot(split="lakes")


def test_build_dataset_passes_options(fake_root, tmp_path):
    dataset = build_dataset("omniglot", data_root=fake_root, cache_dir=tmp_path,
                            split="lake", rotations="true")
    assert dataset.rotations is True and dataset.scheme == "lake"
    with pytest.raises(MetabenchError, match="no option 'rotation'"):
        build_dataset("omniglot", rotation=True)


def serve(directory: Path):
    """``directory`` over HTTP on 127.0.0.1, as the official site would serve it."""
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    handler = functools.partial(quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture
def served_zips(fake_root):
    """The fake zips over HTTP on 127.0.0.1."""
    server, url = serve(fake_root)
    yield url
    server.shutdown()
    server.server_close()


def pin(monkeypatch, folder: Path) -> dict[str, str]:
    """Pin the digests of the zips in ``folder`` in place of Lake's (fakes are other bytes)."""
    digests = {part: sha256_of(folder / f"{part}.zip") for part in omniglot.PARTS}
    monkeypatch.setattr(omniglot, "SHA256", digests)
    return digests


def test_pinned_digests_are_those_of_lakes_zips():
    assert set(omniglot.SHA256) == set(omniglot.PARTS)
    assert omniglot.SHA256["images_background"].startswith("ad41ab679c8b5d90")
    assert omniglot.SHA256["images_evaluation"].startswith("1f61a8f3366785b0")
    assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in omniglot.SHA256.values())


def test_download_fetches_the_zips_over_http(served_zips, fake_root, tmp_path, monkeypatch):
    pin(monkeypatch, fake_root)
    root = tmp_path / "fresh"
    dataset = Omniglot(root, split="lake", download=True, cache_dir=tmp_path, base_url=served_zips)
    assert dataset.split("test").num_classes == 4
    for part in ("images_background", "images_evaluation"):
        assert (root / f"{part}.zip").read_bytes() == (fake_root / f"{part}.zip").read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["images_background.zip", "images_evaluation.zip"]


def test_download_from_a_file_url(fake_root, tmp_path, monkeypatch):
    pin(monkeypatch, fake_root)
    root = tmp_path / "fresh"
    dataset = Omniglot(root, split="lake", download=True, cache_dir=tmp_path,
                       base_url=fake_root.as_uri() + "/")
    assert dataset.split("validation").num_classes == 10


def test_failed_download_leaves_no_partial_file(served_zips, tmp_path):
    root = tmp_path / "fresh"
    with pytest.raises(MetabenchError, match=r"download of http://127\.0\.0\.1:\d+/nothing/"):
        Omniglot(root, download=True, cache_dir=tmp_path, base_url=served_zips + "nothing/").split("test")
    assert not root.exists() or not list(root.iterdir())


def test_download_refuses_a_file_that_is_not_lakes_zip(tmp_path):
    source = tmp_path / "site"
    source.mkdir()
    for part in ("images_background", "images_evaluation"):
        (source / f"{part}.zip").write_text("<html>rate limited</html>")
    got = sha256_of(source / "images_background.zip")
    root = tmp_path / "fresh"
    with pytest.raises(MetabenchError) as error:
        Omniglot(root, download=True, cache_dir=tmp_path, base_url=source.as_uri() + "/").split("test")
    assert str(error.value) == (
        f"omniglot: images_background.zip from {source.as_uri()}/images_background.zip has "
        f"SHA-256 {got}, expected {omniglot.SHA256['images_background']}; the file was not kept")
    assert not root.exists() or not list(root.iterdir())


def test_download_refuses_a_zip_with_one_byte_changed(fake_root, tmp_path, monkeypatch):
    digests = pin(monkeypatch, fake_root)
    site = tmp_path / "site"
    site.mkdir()
    for part in ("images_background", "images_evaluation"):
        data = bytearray((fake_root / f"{part}.zip").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (site / f"{part}.zip").write_bytes(bytes(data))
    server, url = serve(site)
    try:
        with pytest.raises(MetabenchError) as error:
            Omniglot(tmp_path / "fresh", split="lake", download=True, cache_dir=tmp_path,
                     base_url=url).split("test")
    finally:
        server.shutdown()
        server.server_close()
    message = str(error.value)
    got = sha256_of(site / "images_background.zip")
    assert message.startswith(f"omniglot: images_background.zip from {url}images_background.zip")
    assert f"has SHA-256 {got}, expected {digests['images_background']}" in message
    assert "\n" not in message and got != digests["images_background"]
    assert not list((tmp_path / "fresh").iterdir())


def test_files_already_there_are_not_checked(fake_root, tmp_path):
    # A user's own copy (say re-zipped) is read as it is; only downloads are verified.
    dataset = Omniglot(fake_root, split="lake", download=True, cache_dir=tmp_path,
                       base_url="http://127.0.0.1:9/never-fetched/")
    assert dataset.split("test").num_classes == 4


# --- the real data set -----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory) -> Path:
    """One cache for the module: the real zips are decoded once (about 10 s)."""
    return tmp_path_factory.mktemp("omniglot-cache")


def test_real_omniglot_has_964_background_and_659_evaluation_characters(omniglot_root, real_cache):
    lake = Omniglot(omniglot_root, split="lake", cache_dir=real_cache)
    sizes = classes(lake)
    assert sizes["train"] + sizes["validation"] == 964 and sizes["test"] == 659
    for split in SPLITS:
        data = lake.split(split)
        assert data.uniform and data.min_examples == 20
        assert data.images.shape[1:] == (1, 28, 28)
    held_out = {n.split("/")[0] for n in lake.split("validation").class_names}
    assert held_out == set(LAKE_VALIDATION_ALPHABETS) and sizes["validation"] == 167


def test_real_omniglot_vinyals_split_is_the_authors_files(omniglot_root, real_cache):
    vinyals = Omniglot(omniglot_root, cache_dir=real_cache)
    assert classes(vinyals) == {"train": 1028, "validation": 172, "test": 423}
    names = {s: set(vinyals.split(s).class_names) for s in SPLITS}
    assert sum(len(n) for n in names.values()) == len(set().union(*names.values())) == 1623
    alphabets = {s: {n.split("/")[0] for n in names[s]} for s in SPLITS}
    # Whole alphabets per split, except Gurmukhi, which the authors' files split.
    assert alphabets["train"] & alphabets["test"] == {"Gurmukhi"}
    assert not alphabets["train"] & alphabets["validation"]
    assert not alphabets["validation"] & alphabets["test"]
    assert {"Kannada", "Keble", "Malayalam", "Tengwar", "Tibetan", "ULOG"} <= alphabets["test"]
    assert sum(n.startswith("Gurmukhi/") for n in names["test"]) == 4
    rotated = Omniglot(omniglot_root, rotations=True, trainval=True, cache_dir=real_cache)
    assert classes(rotated) == {"train": 4800, "validation": 688, "test": 1692}
    episode = EpisodeSampler(vinyals, "test", TaskSpec(5, 1, 15)).episode(0)
    assert episode.query_x.shape == (75, 1, 28, 28)


def test_vinyals_split_files_match_the_authors_counts():
    from importlib import resources

    folder = resources.files("metabench.data").joinpath("splits")
    counts = {name: len(folder.joinpath(f"omniglot-vinyals-{name}.txt").read_text().split())
              for name in ("train", "val", "test")}
    assert counts == {"train": 1028, "val": 172, "test": 423}  # x4 rotations in the authors' files
    listed = [line for name in counts
              for line in folder.joinpath(f"omniglot-vinyals-{name}.txt").read_text().split()]
    assert len(set(listed)) == 1623 and all(re.fullmatch(r"[^/]+/character\d\d", n) for n in listed)


def test_real_omniglot_shuffled_and_nichol_splits(omniglot_root, real_cache):
    shuffled = Omniglot(omniglot_root, split="shuffled", cache_dir=real_cache)
    assert classes(shuffled) == {"train": 1100, "validation": 100, "test": 423}
    nichol = Omniglot(omniglot_root, split="nichol", cache_dir=real_cache)
    assert classes(nichol) == {"train": 1200, "validation": 1200, "test": 423}
    assert nichol.split("validation").class_names == nichol.split("train").class_names
    # openai/supervised-reptile: random.seed(0); shuffle the sorted characters; first 1,200.
    import random

    every = sorted(nichol.split("train").class_names + nichol.split("test").class_names,
                   key=lambda n: tuple(n.split("/")))
    random.seed(0)
    random.shuffle(every)
    assert set(nichol.split("test").class_names) == set(every[1200:])
    schemes = Omniglot(omniglot_root, cache_dir=real_cache).describe()["split_schemes"]
    assert schemes["vinyals"]["characters"] == {"train": 1028, "validation": 172, "test": 423}
    assert set(schemes) == {"vinyals", "shuffled", "nichol", "lake"}


def test_download_of_the_real_zips_verifies_and_loads(omniglot_root, real_cache, tmp_path,
                                                      monkeypatch):
    # ../shared holds a re-zip of Lake's files (other bytes, same characters): pin its digests
    # to run the real download path end to end: fetch, verify, rename, decode.
    pin(monkeypatch, omniglot_root)
    server, url = serve(omniglot_root)
    try:
        root = tmp_path / "fresh"
        lake = Omniglot(root, split="lake", download=True, cache_dir=real_cache, base_url=url)
        assert lake.split("test").num_classes == 659
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in root.iterdir()) == ["images_background.zip", "images_evaluation.zip"]
    for part in omniglot.PARTS:
        assert sha256_of(root / f"{part}.zip") == omniglot.SHA256[part]


def test_download_of_a_corrupted_real_zip_is_refused(omniglot_root, tmp_path, monkeypatch):
    digests = pin(monkeypatch, omniglot_root)
    site = tmp_path / "site"
    site.mkdir()
    for part in omniglot.PARTS:
        data = bytearray((omniglot_root / f"{part}.zip").read_bytes())
        data[1000] ^= 0x01
        (site / f"{part}.zip").write_bytes(bytes(data))
    root = tmp_path / "fresh"
    with pytest.raises(MetabenchError) as error:
        Omniglot(root, download=True, cache_dir=tmp_path, base_url=site.as_uri() + "/").split("test")
    got = sha256_of(site / "images_background.zip")
    assert str(error.value) == (
        f"omniglot: images_background.zip from {site.as_uri()}/images_background.zip has SHA-256 "
        f"{got}, expected {digests['images_background']}; the file was not kept")
    assert not list(root.iterdir())


def test_datasets_command_lists_classes_and_notes(fake_root, tmp_path, capsys):
    from metabench.cli import main

    args = ["datasets", "--json", "--data-root", str(fake_root), "--cache-dir", str(tmp_path),
            "omniglot", "synthetic", "imagefolder"]
    main(args)
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["omniglot"]["classes"] is None  # the default Vinyals split needs all 1,623
    assert "needs the 1623 characters" in rows["omniglot"]["note"]
    assert rows["synthetic"]["examples_per_class"] == 20 and rows["synthetic"]["note"] == ""
    assert "has no class sub-folders" in rows["imagefolder"]["note"]
    main(["datasets", "--json", "omniglot"])
    assert "omniglot needs --data-root" in json.loads(capsys.readouterr().out)[0]["note"]
    main(["datasets", "synthetic"])
    assert "synthetic" in capsys.readouterr().out

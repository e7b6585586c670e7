"""learn2learn zoo adapters on tiny fixture files in learn2learn's formats.

Each fixture is also read by learn2learn's own dataset class (download=False) where that
works offline, so the fixtures are known to be in the format learn2learn reads.
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metabench import registry
from metabench.data import describe_datasets
from metabench.data.download import sha256_of
from metabench.data.zoo import CUB, FC100, CifarFS, MiniImagenet, Remote, TieredImagenet
from metabench.episodes import EpisodeSampler
from metabench.errors import MetabenchError
from metabench.protocol import TaskSpec

pytest.importorskip("learn2learn", reason="the zoo adapters need learn2learn installed")

SHORT = {"train": "train", "validation": "val", "test": "test"}
PER_CLASS = 5


def pixel_images(classes: int, size: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[N, size, size, 3] uint8 images whose red channel is the class, and their labels,
    interleaved by class (as real pickles are not grouped)."""
    labels = np.tile(np.arange(start, start + classes), PER_CLASS)
    images = np.zeros((len(labels), size, size, 3), dtype=np.uint8)
    images[..., 0] = labels[:, None, None] * 10
    images[..., 1] = np.arange(len(labels))[:, None, None]
    return images, labels


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        pickle.dump(obj, file)


def l2l_dataset(name: str, root: Path, split: str):
    datasets = pytest.importorskip("learn2learn.vision.datasets")
    return getattr(datasets, name)(root=str(root), mode=split, download=False)


def red_of_class(data, k: int) -> list[int]:
    return data.images[data.offsets[k] : data.offsets[k + 1], 0].unique().tolist()


def test_mini_imagenet(tmp_path):
    for split, start in (("train", 0), ("validation", 4), ("test", 7)):
        images, labels = pixel_images(3 if split != "train" else 4, 6, start)
        class_dict = {f"n{c:08d}": np.flatnonzero(labels == c).tolist() for c in np.unique(labels)}
        dump(tmp_path / f"mini-imagenet-cache-{split}.pkl",
             {"image_data": images, "class_dict": class_dict})
    dataset = MiniImagenet(tmp_path)
    train = dataset.split("train")
    assert train.num_classes == 4 and train.min_examples == PER_CLASS
    assert train.images.shape[1:] == (3, 6, 6) and train.class_names[0] == "n00000000"
    assert [red_of_class(train, k) for k in range(4)] == [[0], [10], [20], [30]]
    theirs = l2l_dataset("MiniImagenet", tmp_path, "train")
    assert len(theirs) == len(train.images) and len(set(theirs.y.tolist())) == 4
    episode = EpisodeSampler(dataset, "test", TaskSpec(ways=3, shots=1, queries=2)).episode(0)
    assert episode.support_x.shape == (3, 3, 6, 6)


def test_fc100(tmp_path):
    for split, start in (("train", 0), ("validation", 5), ("test", 8)):
        images, labels = pixel_images(3, 4, start)
        dump(tmp_path / f"FC100_{SHORT[split]}.pickle", {"data": images, "labels": labels.tolist()})
    test = FC100(tmp_path).split("test")
    assert test.class_names == ["8", "9", "10"] and test.images.shape == (15, 3, 4, 4)
    assert [red_of_class(test, k) for k in range(3)] == [[80], [90], [100]]
    assert len(l2l_dataset("FC100", tmp_path, "test")) == 15


def test_tiered_imagenet(tmp_path):
    folder = tmp_path / "tiered-imagenet"
    for split, start in (("train", 0), ("validation", 3), ("test", 6)):
        images, labels = pixel_images(3, 10, start)
        encoded = [np.frombuffer(png(image), dtype=np.uint8) for image in images]
        dump(folder / f"{SHORT[split]}_images_png.pkl", encoded)
        dump(folder / f"{SHORT[split]}_labels.pkl", {
            "label_specific": labels,
            "label_general": labels // 2,
            "label_specific_str": [f"synset{c}" for c in range(9)],
        })
    dataset = TieredImagenet(tmp_path, cache_dir=tmp_path / "cache")
    validation = dataset.split("validation")
    assert validation.class_names == ["synset3", "synset4", "synset5"]
    assert validation.images.shape == (15, 3, 84, 84) and validation.min_examples == PER_CLASS
    assert [red_of_class(validation, k) for k in range(3)] == [[30], [40], [50]]
    image, label = l2l_dataset("TieredImagenet", tmp_path, "validation")[0]
    assert image.size == (10, 10) and label == 3
    assert len(list((tmp_path / "cache").glob("tiered-imagenet-validation-*.npz"))) == 1


def make_cifar_raw(root: Path) -> None:
    data = root / "cifarfs" / "cifar100" / "data"
    splits = root / "cifarfs" / "cifar100" / "splits" / "bertinetto"
    splits.mkdir(parents=True)
    for split, names in (("train", ["apple", "bee", "cup"]), ("val", ["dog", "eel"]),
                         ("test", ["fox", "gem"])):
        (splits / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            (data / name).mkdir(parents=True)
            for i in range(PER_CLASS):
                Image.new("RGB", (32, 32), (len(name) * 10, i, 0)).save(data / name / f"{i}.png")


def test_cifar_fs_from_the_raw_zip_layout_and_processed_layout(tmp_path):
    make_cifar_raw(tmp_path)
    raw = CifarFS(tmp_path, cache_dir=tmp_path / "cache").split("validation")
    assert raw.class_names == ["dog", "eel"] and raw.images.shape == (10, 3, 32, 32)
    theirs = l2l_dataset("CIFARFS", tmp_path, "validation")  # builds cifarfs/processed/
    assert len(theirs) == 10 and (tmp_path / "cifarfs" / "processed" / "val").is_dir()
    processed = CifarFS(tmp_path, cache_dir=tmp_path / "cache")
    assert processed.expected("test") == ["cifarfs/processed/test"]
    assert processed.split("test").class_names == ["fox", "gem"]


def test_cub_uses_learn2learn_class_lists_and_drops_imagenet_duplicates(tmp_path):
    from learn2learn.vision.datasets.cu_birds200 import IMAGENET_DUPLICATES, SPLITS

    images = tmp_path / "cubirds200" / "CUB_200_2011" / "images"
    for name in SPLITS["validation"]:
        (images / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (12, 9), (i * 50, 0, 0)).save(images / name / f"{name[4:]}_{i}.jpg")
    duplicate = IMAGENET_DUPLICATES["validation"][0]  # a Dark_Eyed_Junco image
    Image.new("RGB", (12, 9)).save(images / "076.Dark_eyed_Junco" / duplicate)
    data = CUB(tmp_path, image_size=16, cache_dir=tmp_path / "cache").split("validation")
    assert data.num_classes == 30 and data.class_names == SPLITS["validation"]
    assert data.images.shape == (60, 3, 16, 16) and data.min_examples == 2
    assert len(l2l_dataset("CUBirds200", tmp_path, "validation")) == 60
    with_duplicates = CUB(tmp_path, image_size=16, include_imagenet_duplicates=True,
                          cache_dir=tmp_path / "cache").split("validation")
    assert len(with_duplicates.images) == 61


@pytest.mark.parametrize(("cls", "expected"), [
    (MiniImagenet, "mini-imagenet-cache-train.pkl"),
    (TieredImagenet, "tiered-imagenet/train_images_png.pkl"),
    (CifarFS, "cifarfs/cifar100/data"),
    (FC100, "FC100_train.pickle"),
    (CUB, "cubirds200/CUB_200_2011/images"),
])
def test_missing_files_name_the_path_the_files_and_the_source(tmp_path, cls, expected):
    with pytest.raises(MetabenchError) as error:
        cls(tmp_path).split("train")
    message = str(error.value)
    assert message.startswith(f"{cls.name}: {tmp_path / expected} not found")
    assert "--download" in message and "https://" in message and "\n" not in message
    with pytest.raises(MetabenchError, match=f"{cls.name} needs --data-root"):
        cls().split("train")


def test_corrupt_pickle_is_reported(tmp_path):
    (tmp_path / "mini-imagenet-cache-train.pkl").write_bytes(b"garbage")
    with pytest.raises(MetabenchError, match=r"mini-imagenet: cannot read .*cache-train\.pkl"):
        MiniImagenet(tmp_path).split("train")
    dump(tmp_path / "FC100_train.pickle", {"pixels": []})
    with pytest.raises(MetabenchError, match="not in learn2learn's format"):
        FC100(tmp_path).split("train")


def test_registered_and_listed_with_notes_when_data_is_missing(tmp_path):
    names = set(registry.get_datasets())
    assert {"mini-imagenet", "tiered-imagenet", "cifar-fs", "fc100", "cub"} <= names
    rows = {r["name"]: r for r in describe_datasets(data_root=tmp_path, cache_dir=tmp_path,
                                                    names=["fc100", "synthetic"])}
    assert rows["fc100"]["classes"] is None and "FC100_train.pickle" in rows["fc100"]["note"]
    assert rows["synthetic"]["classes"] == {"train": 64, "validation": 16, "test": 20}


# --- --download: only files with a pinned SHA-256 --------------------------------------


@pytest.mark.parametrize(("cls", "file", "where"), [
    (MiniImagenet, "mini-imagenet-cache-train.pkl", "save it as {root}/mini-imagenet-cache-train.pkl"),
    (TieredImagenet, "tiered-imagenet-train_images_png.pkl",
     "save it as {root}/tiered-imagenet/train_images_png.pkl"),
    (CifarFS, "cifar100.zip", "unpack it into {root}/cifarfs"),
    (FC100, "fc100.zip", "unpack it into {root}"),
])
def test_download_without_a_pinned_digest_is_refused(tmp_path, monkeypatch, cls, file, where):
    def no_network(*args, **kwargs):
        raise AssertionError("nothing may be fetched without a pinned digest")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    root = tmp_path / "data"
    with pytest.raises(MetabenchError) as error:
        cls(root, download=True).split("train")
    message = str(error.value)
    assert message == (
        f"{cls.name}: metabench has no pinned SHA-256 for {file}, so --download will not fetch "
        f"it unverified; download it by hand from https://zenodo.org/record/7978538/files/{file} "
        f"and {where.format(root=root)}")
    assert not root.exists() or not list(root.iterdir())


def test_every_pinned_remote_is_a_sha256():
    for cls in (MiniImagenet, TieredImagenet, CifarFS, FC100, CUB):
        for split in SHORT:
            for remote in cls().remotes(split):
                assert remote.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
    (cub,) = CUB().remotes("train")
    assert cub.sha256 == "0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081"
    assert cub.url.startswith("https://data.caltech.edu/") and cub.unpack == "cubirds200"


def cub_tgz(path: Path) -> Path:
    """A tiny CUB_200_2011.tgz: the validation classes, 2 JPEGs each, and attributes.txt."""
    from learn2learn.vision.datasets.cu_birds200 import SPLITS

    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name in SPLITS["validation"]:
            for i in range(2):
                buffer = io.BytesIO()
                Image.new("RGB", (12, 9), (i * 50, 0, 0)).save(buffer, format="JPEG")
                add(f"CUB_200_2011/images/{name}/{name[4:]}_{i}.jpg", buffer.getvalue())
        add("attributes.txt", b"1 has_bill_shape::curved\n")
    return path


def test_cub_download_verifies_unpacks_and_loads(tmp_path, monkeypatch):
    source = cub_tgz(tmp_path / "CUB_200_2011.tgz")
    remote = Remote(source.as_uri(), "CUB_200_2011.tgz", sha256_of(source), unpack="cubirds200")
    monkeypatch.setattr(CUB, "remotes", lambda self, split: [remote])
    root = tmp_path / "data"
    data = CUB(root, download=True, image_size=16, cache_dir=tmp_path / "cache").split("validation")
    assert data.num_classes == 30 and data.images.shape == (60, 3, 16, 16)
    assert sorted(p.name for p in root.iterdir()) == ["cubirds200"]  # the archive is gone
    assert sorted(p.name for p in (root / "cubirds200").iterdir()) == ["CUB_200_2011", "attributes.txt"]


def test_cub_download_with_the_wrong_digest_keeps_nothing(tmp_path, monkeypatch):
    source = cub_tgz(tmp_path / "CUB_200_2011.tgz")
    pinned = "0" * 64
    remote = Remote(source.as_uri(), "CUB_200_2011.tgz", pinned, unpack="cubirds200")
    monkeypatch.setattr(CUB, "remotes", lambda self, split: [remote])
    root = tmp_path / "data"
    with pytest.raises(MetabenchError) as error:
        CUB(root, download=True).split("validation")
    assert str(error.value) == (
        f"cub: CUB_200_2011.tgz from {source.as_uri()} has SHA-256 {sha256_of(source)}, "
        f"expected {pinned}; the file was not kept")
    assert not list(root.iterdir())


def test_cub_download_refuses_to_overwrite_a_partial_copy(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("nothing may be fetched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    root = tmp_path / "data"
    (root / "cubirds200" / "CUB_200_2011").mkdir(parents=True)
    with pytest.raises(MetabenchError, match=r"cub: .*cubirds200 exists but does not hold"):
        CUB(root, download=True).split("validation")
    (root / "CUB_200_2011.tgz").write_bytes(b"fetched by hand")
    with pytest.raises(MetabenchError, match=r"CUB_200_2011\.tgz is already there; unpack it"):
        CUB(root, download=True).split("validation")
    assert (root / "CUB_200_2011.tgz").read_bytes() == b"fetched by hand"

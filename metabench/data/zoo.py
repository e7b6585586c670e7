"""The learn2learn zoo: mini-ImageNet, tiered-ImageNet, CIFAR-FS, FC100 and CUB-200.

Each reads, from ``data_root``, the files learn2learn's own dataset classes read (same names,
same layouts, same splits), and converts them to class-grouped ``uint8`` arrays:

=================  ==========================================================================
mini-imagenet      ``mini-imagenet-cache-{train,validation,test}.pkl``: a dict with
                   ``image_data`` ``[N, 84, 84, 3]`` and ``class_dict`` {class: [rows]}
tiered-imagenet    ``tiered-imagenet/{train,val,test}_images_png.pkl`` (PNG bytes per image)
                   and ``tiered-imagenet/{train,val,test}_labels.pkl`` (``label_specific``)
cifar-fs           ``cifarfs/processed/{train,val,test}/<class>/*.png``, or the raw
                   ``cifarfs/cifar100/data/<class>/`` with
                   ``cifarfs/cifar100/splits/bertinetto/{train,val,test}.txt``
fc100              ``FC100_{train,val,test}.pickle``: ``data`` ``[N, 32, 32, 3]``, ``labels``
cub                ``cubirds200/CUB_200_2011/images/<class>/*.jpg`` with learn2learn's class
                   lists (Triantafillou et al. 2020), ImageNet duplicates left out, 84x84
=================  ==========================================================================

Registered only where learn2learn is installed (CUB's class lists come from it). Images that
need decoding (tiered-ImageNet, CIFAR-FS, CUB) are decoded once and cached as ``.npz``.

``download=True`` fetches a split's missing files with ``metabench.data.download``, which
keeps a file only if its SHA-256 is the one pinned here (``Remote.sha256``), and unpacks
archives into learn2learn's layout. A file with no pinned digest is never downloaded: the
data set refuses with one line naming the file and the URL to fetch it from by hand.

=================  ==========================================================================
cub                ``CUB_200_2011.tgz`` (1,150,585,339 bytes) from CaltechDATA, the dataset's
                   own host, SHA-256 ``0c685df5...f081``: pinned by TensorFlow Datasets
                   (``url_checksums/caltech_birds2011.txt``, for the Google Drive copy that
                   learn2learn also falls back to) and by torchvision's prototype datasets
                   (for Caltech's older vision.caltech.edu URL); the MD5 ``97eceeb1...`` that
                   many projects pin for the CaltechDATA URL is of the same file.
                   learn2learn's first choice, its Zenodo mirror (record 8000562), has no
                   published SHA-256, so metabench fetches the original instead; both
                   unpack to ``cubirds200/CUB_200_2011/``.
mini-imagenet,     no pinned digest: learn2learn's pickles and zips on Zenodo (record 7978538,
tiered-imagenet,   also Dropbox and Google Drive) have no SHA-256 published anywhere metabench
cifar-fs, fc100    could find (Zenodo lists MD5s only on its web page); ``--download``
                   refuses and names the URL.
=================  ==========================================================================
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pickle
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from metabench.data.base import (
    ClassificationDataset,
    ClassSplit,
    cache_root,
    cached_arrays,
    decode_image,
)
from metabench.data.download import download_file, extract_archive
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterDataset

SHORT = {"train": "train", "validation": "val", "test": "test"}
ZENODO = "https://zenodo.org/record/7978538/files/"
CALTECH_CUB = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1"
CUB_SHA256 = "0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081"


@dataclass(frozen=True)
class Remote:
    """One file ``--download`` fetches: from ``url``, saved as ``path`` under the data root.

    ``sha256`` is the pinned digest (None: not known, so never downloaded); ``unpack`` names
    the folder under the data root that an archive is unpacked into (the archive itself is
    deleted afterwards), or None for a file used as it is.
    """

    url: str
    path: str
    sha256: str | None
    unpack: str | None = None

    def by_hand(self, root: Path) -> str:
        """Where a user puts the file fetched by hand, as messages say it."""
        if self.unpack is None:
            return f"save it as {root / self.path}"
        return f"unpack it into {root / self.unpack}"


class ZooDataset(ClassificationDataset):
    """A learn2learn zoo data set read from ``data_root`` in learn2learn's file layout."""

    url: ClassVar[str] = ""

    def __init__(
        self,
        data_root: str | Path | None = None,
        download: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.data_root = Path(data_root).expanduser() if data_root is not None else None
        self.download = bool(download)
        self.cache_dir = cache_root(cache_dir)

    @abstractmethod
    def expected(self, split: str) -> list[str]:
        """Paths, relative to ``data_root``, that ``split`` is read from."""

    def expected_text(self, split: str) -> str:
        """The files of ``split``, as error messages name them."""
        return ", ".join(self.expected(split))

    @abstractmethod
    def read(self, root: Path, split: str) -> ClassSplit:
        """Read ``split`` from files known to exist under ``root``."""

    def load_split(self, split: str) -> ClassSplit:
        root = self._root()
        missing = [p for p in self.expected(split) if not (root / p).exists()]
        if missing and self.download:
            self._download(root, split)
            missing = [p for p in self.expected(split) if not (root / p).exists()]
        if missing:
            raise MetabenchError(
                f"{self.name}: {root / missing[0]} not found; expected {self.expected_text(split)} "
                f"under {root} (learn2learn's layout); run with --download or get them from {self.url}"
            )
        return self.read(root, split)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["source"] = f"{self.source}, from {self.data_root}"
        return info

    def _root(self) -> Path:
        if self.data_root is None:
            raise MetabenchError(
                f"{self.name} needs --data-root: a folder holding its files in learn2learn's "
                f"layout ({self.expected_text('train')}, ...); get them from {self.url} "
                "or add --download"
            )
        return self.data_root

    def remotes(self, split: str) -> list[Remote]:
        """The files ``--download`` fetches for ``split`` (learn2learn's sources)."""
        return []

    def _download(self, root: Path, split: str) -> None:
        """Fetch ``split``'s files, each verified against its pinned SHA-256, or refuse."""
        remotes = [r for r in self.remotes(split) if r.unpack is not None or not (root / r.path).exists()]
        for remote in remotes:  # refuse before fetching anything
            name = remote.url.rsplit("/", 1)[-1].split("?")[0]
            if remote.sha256 is None:
                raise MetabenchError(
                    f"{self.name}: metabench has no pinned SHA-256 for {name}, so --download "
                    f"will not fetch it unverified; download it by hand from {remote.url} and "
                    f"{remote.by_hand(root)}"
                )
            if remote.unpack is not None:
                archive, folder = root / remote.path, root / remote.unpack
                if archive.exists():
                    raise MetabenchError(
                        f"{self.name}: {archive} is already there; unpack it into {folder} or "
                        "move it away and run with --download again"
                    )
                if remote.unpack and folder.is_dir() and any(folder.iterdir()):
                    raise MetabenchError(
                        f"{self.name}: {folder} exists but does not hold "
                        f"{self.expected_text(split)}; move it away and run with --download "
                        f"again, or complete it by hand from {remote.url}"
                    )
        for remote in remotes:
            assert remote.sha256 is not None
            target = root / remote.path
            download_file(remote.url, target, self.name, sha256=remote.sha256)
            if remote.unpack is not None:
                try:
                    extract_archive(target, root / remote.unpack, self.name)
                finally:
                    target.unlink(missing_ok=True)

    def _cached(self, key_paths: list[Path], tag: str, build) -> dict[str, np.ndarray]:
        """Decoded arrays for ``tag``, cached under a key made of the source files' sizes."""
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in key_paths]
        key = hashlib.blake2b(repr((tag, stats)).encode(), digest_size=8).hexdigest()
        return cached_arrays(self.cache_dir / f"{self.name}-{tag}-{key}.npz", build)


class MiniImagenet(ZooDataset):
    """mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle splits): 64/16/20 classes x 600."""

    name = "mini-imagenet"
    input_shape = (3, 84, 84)
    source = "Ravi & Larochelle 2017 splits of ImageNet (learn2learn pickles)"
    url = ZENODO + "mini-imagenet-cache-train.pkl (and -validation, -test)"

    def expected(self, split: str) -> list[str]:
        return [f"mini-imagenet-cache-{split}.pkl"]

    def remotes(self, split: str) -> list[Remote]:
        name = f"mini-imagenet-cache-{split}.pkl"
        return [Remote(ZENODO + name, name, sha256=None)]

    def read(self, root: Path, split: str) -> ClassSplit:
        path = root / self.expected(split)[0]
        data = _unpickle(path, self.name)
        try:
            images, class_dict = data["image_data"], data["class_dict"]
            names = list(class_dict)
            rows = [np.asarray(class_dict[n], dtype=np.int64) for n in names]
            ordered = np.asarray(images)[np.concatenate(rows)]
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise _format_error(self.name, path, "a dict with image_data [N,84,84,3] and "
                                "class_dict {class: [rows]}", error) from None
        return ClassSplit.from_counts(_channels_first(ordered), [len(r) for r in rows], names)


class TieredImagenet(ZooDataset):
    """tiered-ImageNet (Ren et al. 2018): 351/97/160 classes grouped by ImageNet category."""

    name = "tiered-imagenet"
    input_shape = (3, 84, 84)
    source = "Ren et al. 2018 (learn2learn pickles of PNG bytes)"
    url = ZENODO + "tiered-imagenet-{train,val,test}_{images_png,labels}.pkl"

    def expected(self, split: str) -> list[str]:
        short = SHORT[split]
        return [f"tiered-imagenet/{short}_images_png.pkl", f"tiered-imagenet/{short}_labels.pkl"]

    def remotes(self, split: str) -> list[Remote]:
        return [Remote(f"{ZENODO}tiered-imagenet-{SHORT[split]}_{kind}.pkl",
                       f"tiered-imagenet/{SHORT[split]}_{kind}.pkl", sha256=None)
                for kind in ("images_png", "labels")]

    def read(self, root: Path, split: str) -> ClassSplit:
        images_path, labels_path = (root / p for p in self.expected(split))
        arrays = self._cached([images_path, labels_path], split,
                              lambda: self._decode(images_path, labels_path))
        return ClassSplit.from_counts(arrays["images"], arrays["counts"], list(arrays["names"]))

    def _decode(self, images_path: Path, labels_path: Path) -> dict[str, np.ndarray]:
        encoded = _unpickle(images_path, self.name)
        info = _unpickle(labels_path, self.name)
        try:
            labels = np.asarray(info["label_specific"], dtype=np.int64)
            names = info.get("label_specific_str")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise _format_error(self.name, labels_path, "a dict with label_specific", error) from None
        if len(labels) != len(encoded):
            raise MetabenchError(
                f"{self.name}: {labels_path} has {len(labels)} labels for {len(encoded)} images "
                f"in {images_path}"
            )
        order = np.argsort(labels, kind="stable")
        images = _decode_all(
            ((bytes(np.asarray(encoded[i], dtype=np.uint8)), f"{images_path}[{i}]") for i in order),
            len(order), (84, 84),
        )
        classes, counts = np.unique(labels, return_counts=True)
        class_names = [str(names[c]) if names is not None else str(c) for c in classes]
        return {"images": images, "counts": counts, "names": np.array(class_names)}


class CifarFS(ZooDataset):
    """CIFAR-FS (Bertinetto et al. 2019): CIFAR-100 classes split 64/16/20, 32x32."""

    name = "cifar-fs"
    input_shape = (3, 32, 32)
    source = "Bertinetto et al. 2019 splits of CIFAR-100 (learn2learn layout)"
    url = ZENODO + "cifar100.zip (unzipped into <data-root>/cifarfs)"

    def expected(self, split: str) -> list[str]:
        if self.data_root is not None and (self.data_root / "cifarfs" / "processed").is_dir():
            return [f"cifarfs/processed/{SHORT[split]}"]
        return ["cifarfs/cifar100/data", f"cifarfs/cifar100/splits/bertinetto/{SHORT[split]}.txt"]

    def remotes(self, split: str) -> list[Remote]:
        return [Remote(ZENODO + "cifar100.zip", "cifar100.zip", sha256=None, unpack="cifarfs")]

    def read(self, root: Path, split: str) -> ClassSplit:
        paths = [root / p for p in self.expected(split)]
        if len(paths) == 1:
            folder = paths[0]
            classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        else:
            folder = paths[0]
            classes = [line.strip() for line in paths[1].read_text().splitlines() if line.strip()]
        files = {c: _image_files(folder / c, self.name) for c in classes}
        listing = [f for fs in files.values() for f in fs]
        arrays = self._cached(listing, split, lambda: _decode_groups(files, (32, 32)))
        return ClassSplit.from_counts(arrays["images"], arrays["counts"], list(arrays["names"]))


class FC100(ZooDataset):
    """FC100 (Oreshkin et al. 2018): CIFAR-100 split by superclass, 60/20/20 classes, 32x32."""

    name = "fc100"
    input_shape = (3, 32, 32)
    source = "Oreshkin et al. 2018 superclass splits of CIFAR-100 (learn2learn pickles)"
    url = ZENODO + "fc100.zip (unzipped into <data-root>)"

    def expected(self, split: str) -> list[str]:
        return [f"FC100_{SHORT[split]}.pickle"]

    def remotes(self, split: str) -> list[Remote]:
        return [Remote(ZENODO + "fc100.zip", "fc100.zip", sha256=None, unpack="")]

    def read(self, root: Path, split: str) -> ClassSplit:
        path = root / self.expected(split)[0]
        archive = _unpickle(path, self.name, encoding="latin1")
        try:
            images = np.asarray(archive["data"], dtype=np.uint8)
            labels = np.asarray(archive["labels"], dtype=np.int64)
            order = np.argsort(labels, kind="stable")
            classes, counts = np.unique(labels, return_counts=True)
            ordered = images[order]
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise _format_error(self.name, path, "a dict with data [N,32,32,3] and labels", error) from None
        return ClassSplit.from_counts(_channels_first(ordered), counts, [str(c) for c in classes])


class CUB(ZooDataset):
    """CUB-200-2011 birds with Meta-Dataset's 140/30/30 class split, resized to 84x84."""

    name = "cub"
    input_shape = (3, 84, 84)
    source = "Welinder et al. 2010, Triantafillou et al. 2020 splits (learn2learn layout)"
    url = CALTECH_CUB + " (extracted into <data-root>/cubirds200)"
    images_dir = "cubirds200/CUB_200_2011/images"

    def __init__(
        self,
        data_root: str | Path | None = None,
        download: bool = False,
        cache_dir: str | Path | None = None,
        image_size: int = 84,
        include_imagenet_duplicates: bool = False,
    ) -> None:
        super().__init__(data_root, download, cache_dir)
        self.image_size = int(image_size)
        self.include_duplicates = bool(include_imagenet_duplicates)
        self.input_shape = (3, self.image_size, self.image_size)

    def expected(self, split: str) -> list[str]:
        if self.data_root is None or not (self.data_root / self.images_dir).is_dir():
            return [self.images_dir]  # reported without importing learn2learn (slow)
        return [f"{self.images_dir}/{c}" for c in _cub_lists()[0][split]]

    def expected_text(self, split: str) -> str:
        return f"{self.images_dir}/<class>/*.jpg for the classes of learn2learn's CUB {split} split"

    def remotes(self, split: str) -> list[Remote]:
        return [Remote(CALTECH_CUB, "CUB_200_2011.tgz", sha256=CUB_SHA256, unpack="cubirds200")]

    def read(self, root: Path, split: str) -> ClassSplit:
        splits, duplicates = _cub_lists()
        skip = set() if self.include_duplicates else set(duplicates[split])
        files = {
            c: [f for f in _image_files(root / self.images_dir / c, self.name) if f.name not in skip]
            for c in splits[split]
        }
        listing = [f for fs in files.values() for f in fs]
        size = (self.image_size, self.image_size)
        arrays = self._cached(listing, f"{split}-{self.image_size}px",
                              lambda: _decode_groups(files, size))
        return ClassSplit.from_counts(arrays["images"], arrays["counts"], list(arrays["names"]))


ZOO = (MiniImagenet, TieredImagenet, CifarFS, FC100, CUB)


def learn2learn_available() -> bool:
    """True when learn2learn is installed (checked without importing it: that is slow)."""
    return importlib.util.find_spec("learn2learn") is not None


@hookimpl
def register_datasets(register: RegisterDataset) -> None:
    if not learn2learn_available():
        return
    for cls in ZOO:
        summary = (cls.__doc__ or cls.name).splitlines()[0]
        register(cls.name, cls, task_types={"classification"}, description=summary)


def _cub_lists() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    module = importlib.import_module("learn2learn.vision.datasets.cu_birds200")
    return module.SPLITS, module.IMAGENET_DUPLICATES


def _unpickle(path: Path, dataset: str, encoding: str = "ASCII") -> Any:
    try:
        with path.open("rb") as file:
            return pickle.load(file, encoding=encoding)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError,
            ImportError, IndexError) as error:
        raise MetabenchError(f"{dataset}: cannot read {path}: {type(error).__name__}: {error}") from None


def _format_error(dataset: str, path: Path, expected: str, error: Exception) -> MetabenchError:
    return MetabenchError(f"{dataset}: {path} is not in learn2learn's format (expected {expected}): "
                          f"{type(error).__name__}: {error}")


def _channels_first(images: np.ndarray) -> np.ndarray:
    """``[N, H, W, C]`` uint8 -> contiguous ``[N, C, H, W]``."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2))


def _image_files(folder: Path, dataset: str) -> list[Path]:
    if not folder.is_dir():
        raise MetabenchError(f"{dataset}: class folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise MetabenchError(f"{dataset}: class folder {folder} holds no images")
    return files


def _decode_all(sources: Iterable[tuple[Any, str]], count: int, size: tuple[int, int]) -> np.ndarray:
    """Decode ``count`` (file, where) pairs into one preallocated ``[N, 3, H, W]`` array."""
    images = np.empty((count, 3, size[1], size[0]), dtype=np.uint8)
    for i, (source, where) in enumerate(sources):
        images[i] = decode_image(source, where, size, "RGB")
    return images


def _decode_groups(files: dict[str, list[Path]], size: tuple[int, int]) -> dict[str, np.ndarray]:
    paths = [p for fs in files.values() for p in fs]
    return {
        "images": _decode_all(((p, str(p)) for p in paths), len(paths), size),
        "counts": np.array([len(fs) for fs in files.values()], dtype=np.int64),
        "names": np.array(list(files)),
    }

"""Omniglot (Lake et al. 2015): 1,623 handwritten characters from 50 alphabets, 20 drawers each.

Reads, from ``data_root``, either the folders ``images_background/`` and
``images_evaluation/`` or the two zips of the official repository
(https://github.com/brendenlake/omniglot, ``python/images_background.zip`` and
``python/images_evaluation.zip``). Images are converted to 28x28 grey (PIL Lanczos
antialiasing from 105x105) with bright strokes on a dark background, decoded once and
cached as an ``.npz`` under the cache folder.

Splits (fixed, class-disjoint; ``metabench datasets omniglot`` lists their sizes):

* ``split="vinyals"`` (default; Vinyals et al. 2016 as Snell et al. distribute it): the class
  lists of jakesnell/prototypical-networks ``data/omniglot/splits/vinyals/{train,val,test}.txt``,
  shipped in ``metabench/data/splits/``: 1,028 ``train``, 172 ``validation`` and 423 ``test``
  characters, whole alphabets per split (Gurmukhi alone is split between train and test, as in
  the authors' files).
* ``split="shuffled"``: the 1,623 characters ordered by ``blake2b("omniglot-vinyals:" +
  "Alphabet/characterNN")`` (a fixed permutation, alphabets mixed, cbfinn/maml's shape: the
  first 1,200 for training, of which the last 100 are ``validation``, so ``train`` has 1,100;
  the other 423 ``test``). cbfinn/maml shuffles ``os.listdir`` order, which no one can replay.
* ``split="nichol"``: openai/supervised-reptile's ``split_dataset``: the characters of both
  zips in sorted alphabet and character order, shuffled by Python's ``random.seed(0)``; the
  first 1,200 ``train``, the other 423 ``test``. The authors hold out no validation set, so
  ``validation`` episodes here come from the training characters (learning curves only).
* ``split="lake"`` (Lake et al. 2015): ``images_evaluation`` (20 alphabets, 659
  characters) is ``test``; ``images_background`` (30 alphabets, 964 characters) is split by
  alphabet: the 5 alphabets first in ``blake2b("omniglot-lake:" + alphabet)`` order are
  ``validation`` (Arcadian, Bengali, Blackfoot, Korean, Mkhedruli: 167 characters), the
  other 25 ``train`` (797 characters).

``trainval=True`` trains on the training and validation characters together (Snell et al.'s
final models train on ``trainval.txt``); ``validation`` is then no longer held out.
``rotations=True`` adds each character rotated by 90, 180 and 270 degrees as three extra
classes, in every split (4,112 / 688 / 1,692 classes for ``vinyals``).

``download=True`` fetches the two zips that are missing from ``data_root`` (from ``base_url``,
by default Lake's repository) and keeps each only if its SHA-256 is the one pinned in
``SHA256``; a wrong digest is a one-line error and nothing is kept (see
``metabench.data.download``). Files already in ``data_root`` are not checked: a user's own
copy may be re-zipped and still hold the same images.

The pinned digests are those of ``github.com/brendenlake/omniglot/raw/master/python/
images_{background,evaluation}.zip`` (9,464,212 and 6,462,886 bytes) as TensorFlow Datasets
records them for these URLs (``tensorflow_datasets/url_checksums/omniglot.txt``); torchvision
pins the same files by MD5 (``68d2efa1...``, ``6b91aef0...``). Re-zipped copies differ: the
uncompressed re-zip at ``../shared/datasets/omniglot`` (8,545,058 and 5,833,360 bytes, SHA-256
``f0b84e53...`` and ``47f6305f...``) holds the same characters but is not these bytes.
"""

from __future__ import annotations

import hashlib
import random
import re
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabench.data.base import (
    ClassificationDataset,
    ClassSplit,
    cache_root,
    cached_arrays,
    decode_image,
)
from metabench.data.download import download_file
from metabench.errors import MetabenchError

BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
PARTS = ("images_background", "images_evaluation")
# SHA-256 of the zips at BASE_URL (source: TensorFlow Datasets' url_checksums/omniglot.txt).
SHA256 = {
    "images_background": "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
    "images_evaluation": "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
}
SPLIT_SCHEMES = ("vinyals", "shuffled", "nichol", "lake")
CHARACTERS, SHUFFLED_TRAIN, SHUFFLED_VALIDATION = 1623, 1200, 100
NICHOL_TRAIN, NICHOL_SEED = 1200, 0
# The authors' file names of the vinyals split, by our split names.
VINYALS_FILES = {"train": "train", "validation": "val", "test": "test"}
LAKE_VALIDATION_COUNT = 5
# What LAKE_VALIDATION_COUNT and the hash order give (checked by a test on the real data).
LAKE_VALIDATION_ALPHABETS = (
    "Arcadian",
    "Bengali",
    "Blackfoot_(Canadian_Aboriginal_Syllabics)",
    "Korean",
    "Mkhedruli_(Georgian)",
)
ROTATIONS = (0, 90, 180, 270)


class Omniglot(ClassificationDataset):
    """Omniglot from the official zips or folders, 28x28, in the papers' splits."""

    name = "omniglot"
    input_shape = (1, 28, 28)

    def __init__(
        self,
        data_root: str | Path | None = None,
        split: str = "vinyals",
        rotations: bool = False,
        trainval: bool = False,
        download: bool = False,
        cache_dir: str | Path | None = None,
        base_url: str = BASE_URL,
    ) -> None:
        super().__init__()
        if split not in SPLIT_SCHEMES:
            raise MetabenchError(
                f"omniglot split scheme '{split}' is not known; expected one of "
                f"{', '.join(SPLIT_SCHEMES)}"
            )
        self.data_root = Path(data_root).expanduser() if data_root is not None else None
        self.scheme = split
        self.rotations = bool(rotations)
        self.trainval = bool(trainval)
        self.download = bool(download)
        self.cache_dir = cache_root(cache_dir)
        self.base_url = base_url
        extras = ", train+validation" * self.trainval + ", rotations" * self.rotations
        self.source = f"Lake et al. 2015 ({split} splits{extras})"
        self._parts: dict[str, ClassSplit] | None = None

    def load_split(self, split: str) -> ClassSplit:
        parts = self._load_parts()
        classes = self._split_classes(parts, split)
        data = _concat([parts[part].subset(indices) for part, indices in classes])
        return _with_rotations(data) if self.rotations else data

    def describe(self) -> dict:
        info = super().describe()
        info["source"] = f"{self.source}, from {self.data_root}"
        info["split_schemes"] = self.split_schemes()
        return info

    def split_schemes(self) -> dict[str, dict[str, Any]]:
        """Every split scheme with its characters per split (before rotations) and source."""
        parts = self._load_parts()
        return {scheme: {"characters": {split: sum(len(i) for _, i in self._classes_of(
                             parts, scheme, split)) for split in ("train", "validation", "test")},
                         "source": SCHEME_SOURCES[scheme]}
                for scheme in SPLIT_SCHEMES}

    def _classes_of(self, parts: dict[str, ClassSplit], scheme: str,
                    split: str) -> list[tuple[str, list]]:
        current, self.scheme = self.scheme, scheme
        try:
            return self._scheme_classes(parts, split)
        finally:
            self.scheme = current

    def _split_classes(self, parts: dict[str, ClassSplit], split: str) -> list[tuple[str, list]]:
        """Which classes of each part (background, evaluation) form ``split``."""
        if self.trainval and split == "train":
            return self._scheme_classes(parts, "train") + self._scheme_classes(parts, "validation")
        return self._scheme_classes(parts, split)

    def _scheme_classes(self, parts: dict[str, ClassSplit], split: str) -> list[tuple[str, list]]:
        if self.scheme == "lake":
            return lake_classes(parts, split)
        names = {part: parts[part].class_names for part in PARTS}
        if sum(len(n) for n in names.values()) != CHARACTERS:
            raise MetabenchError(
                f"omniglot: the {self.scheme} split needs the {CHARACTERS} characters of the "
                f"official zips; {self.data_root} holds {sum(len(n) for n in names.values())}; "
                f"use split=lake or get the zips from {BASE_URL}"
            )
        chosen = set(SCHEMES[self.scheme](names, split))
        return [(part, [i for i, n in enumerate(names[part]) if n in chosen]) for part in PARTS]

    def _load_parts(self) -> dict[str, ClassSplit]:
        if self._parts is None:
            root = self._find_root()
            sources = {part: _source(root, part) for part in PARTS}
            key = hashlib.blake2b(repr(sorted(_fingerprint(s) for s in sources.values())).encode(),
                                  digest_size=6).hexdigest()
            path = self.cache_dir / f"omniglot-28px-{key}.npz"
            arrays = cached_arrays(path, lambda: _decode_all(sources))
            self._parts = {part: _part_split(arrays, part) for part in PARTS}
        return self._parts

    def _find_root(self) -> Path:
        if self.data_root is None:
            raise MetabenchError(
                "omniglot needs --data-root: a folder holding images_background.zip and "
                f"images_evaluation.zip (or the unzipped folders); get them from {BASE_URL} "
                "or add --download"
            )
        missing = [part for part in PARTS if _source(self.data_root, part) is None]
        if missing and self.download:
            for part in missing:
                download_file(f"{self.base_url}{part}.zip", self.data_root / f"{part}.zip",
                              "omniglot", sha256=SHA256[part])
            missing = []
        if missing:
            raise MetabenchError(
                f"omniglot: no {' or '.join(missing)} in {self.data_root}: expected "
                "images_background.zip and images_evaluation.zip (or the unzipped folders) "
                f"there; run with --download or get them from {BASE_URL}"
            )
        return self.data_root


def vinyals_characters(names: dict[str, list[str]], split: str) -> list[str]:
    """The characters of ``split`` in Snell et al.'s files of the Vinyals split."""
    text = resources.files("metabench.data").joinpath(
        f"splits/omniglot-vinyals-{VINYALS_FILES[split]}.txt").read_text()
    listed = text.split()
    known = {n for part in names.values() for n in part}
    missing = [n for n in listed if n not in known]
    if missing:
        raise MetabenchError(f"omniglot: the vinyals split names {missing[0]}, which the zips "
                             f"lack; get the official zips from {BASE_URL}")
    return listed


def shuffled_characters(names: dict[str, list[str]], split: str) -> list[str]:
    """The characters of ``split`` in the fixed hash order (cbfinn/maml's 1,100/100/423)."""
    order = sorted((n for part in PARTS for n in names[part]),
                   key=lambda n: _hash_key("omniglot-vinyals:" + n))
    bounds = {"train": (0, SHUFFLED_TRAIN - SHUFFLED_VALIDATION),
              "validation": (SHUFFLED_TRAIN - SHUFFLED_VALIDATION, SHUFFLED_TRAIN),
              "test": (SHUFFLED_TRAIN, len(order))}[split]
    return order[bounds[0] : bounds[1]]


def nichol_characters(names: dict[str, list[str]], split: str) -> list[str]:
    """openai/supervised-reptile's ``split_dataset`` after ``random.seed(0)``: sorted
    alphabets and characters, shuffled, 1,200 train / 423 test; validation = train."""
    # sorted(os.listdir()) of the merged alphabet folders, then of each alphabet's characters
    ordered = sorted((n for part in PARTS for n in names[part]), key=lambda n: tuple(n.split("/")))
    random.Random(NICHOL_SEED).shuffle(ordered)
    return ordered[NICHOL_TRAIN:] if split == "test" else ordered[:NICHOL_TRAIN]


SCHEME_SOURCES = {
    "vinyals": "Vinyals et al. 2016, Snell et al.'s files (whole alphabets)",
    "shuffled": "fixed hash order, alphabets mixed (cbfinn/maml's sizes)",
    "nichol": "openai/supervised-reptile split_dataset, seed 0 (validation = train)",
    "lake": "Lake et al. 2015: evaluation alphabets for test",
}
SCHEMES = {"vinyals": vinyals_characters, "shuffled": shuffled_characters,
           "nichol": nichol_characters}


def lake_classes(parts: dict[str, ClassSplit], split: str) -> list[tuple[str, list]]:
    """The Lake split: evaluation alphabets for test, five background alphabets held out."""
    if split == "test":
        return [("images_evaluation", list(range(parts["images_evaluation"].num_classes)))]
    names = parts["images_background"].class_names
    held_out = set(lake_validation_alphabets([n.split("/")[0] for n in names]))
    wanted = split == "validation"
    return [("images_background",
             [i for i, n in enumerate(names) if (n.split("/")[0] in held_out) == wanted])]


def lake_validation_alphabets(alphabets: list[str]) -> list[str]:
    """The background alphabets held out for validation in the Lake split."""
    unique = sorted(set(alphabets), key=lambda a: _hash_key("omniglot-lake:" + a))
    return sorted(unique[:LAKE_VALIDATION_COUNT])


def _hash_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _source(root: Path, part: str) -> Path | None:
    """The folder or zip holding ``part`` under ``root``, or None."""
    folder, archive = root / part, root / f"{part}.zip"
    if folder.is_dir():
        return folder
    return archive if archive.is_file() else None


def _fingerprint(source: Path | None) -> tuple:
    assert source is not None
    if source.is_file():
        return (source.name, source.stat().st_size)
    files = sorted(source.rglob("*.png"))
    return (source.name, len(files), sum(f.stat().st_size for f in files))


def _decode_all(sources: dict[str, Path | None]) -> dict[str, np.ndarray]:
    """Decode both parts into arrays: images, per-class counts and class names."""
    arrays = {}
    for part, source in sources.items():
        assert source is not None
        names: list[str] = []
        counts: list[int] = []
        images: list[np.ndarray] = []
        for character, files in _characters(source, part):
            names.append(character)
            counts.append(len(files))
            images.extend(_glyph(data, where) for where, data in files)
        if not names:
            raise MetabenchError(
                f"omniglot: {source} holds no character images (expected "
                f"{part}/<alphabet>/<character>/*.png); get the zips from {BASE_URL}"
            )
        arrays[f"{part}/images"] = np.stack(images)
        arrays[f"{part}/counts"] = np.array(counts, dtype=np.int64)
        arrays[f"{part}/names"] = np.array(names)
    return arrays


def _characters(source: Path, part: str) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """("Alphabet/characterNN", [(where, png bytes)]) in natural order, from a zip or folder."""
    if source.is_dir():
        groups: dict[str, list[tuple[str, Path]]] = {}
        for path in source.glob("*/*/*.png"):
            groups.setdefault(f"{path.parent.parent.name}/{path.parent.name}", []).append(
                (path.name, path))
        for character in sorted(groups, key=_natural):
            files = sorted(groups[character], key=lambda f: _natural(f[0]))
            yield character, [(str(path), _read(path)) for _, path in files]
        return
    yield from _zip_characters(source, part)


def _zip_characters(source: Path, part: str) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    try:
        with zipfile.ZipFile(source) as archive:
            groups: dict[str, list[str]] = {}
            for member in archive.namelist():
                pieces = member.split("/")
                if len(pieces) == 4 and pieces[0] == part and pieces[3].endswith(".png"):
                    groups.setdefault(f"{pieces[1]}/{pieces[2]}", []).append(member)
            for character in sorted(groups, key=_natural):
                members = sorted(groups[character], key=_natural)
                yield character, [(f"{source}:{m}", archive.read(m)) for m in members]
    except (zipfile.BadZipFile, OSError) as error:
        raise MetabenchError(
            f"omniglot: {source} is not a readable zip ({error}); delete it and run with "
            f"--download or get it from {BASE_URL}{part}.zip"
        ) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise MetabenchError(f"omniglot: cannot read image {path}: {error.strerror}") from None


def _glyph(data: bytes, where: str) -> np.ndarray:
    """One 105x105 black-on-white PNG as 28x28 uint8, white strokes on black."""
    return 255 - decode_image(data, where, (28, 28), "L")


def _natural(text: str) -> list:
    """Sort key that puts character2 before character10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def _part_split(arrays: dict[str, np.ndarray], part: str) -> ClassSplit:
    names = list(arrays[f"{part}/names"])
    return ClassSplit.from_counts(arrays[f"{part}/images"], arrays[f"{part}/counts"], names)


def _concat(splits: list[ClassSplit]) -> ClassSplit:
    splits = [s for s in splits if s.num_classes]
    groups = [s.images[s.offsets[k] : s.offsets[k + 1]] for s in splits for k in range(s.num_classes)]
    names = [name for s in splits for name in s.class_names]
    return ClassSplit.from_groups(groups, names)


def _with_rotations(data: ClassSplit) -> ClassSplit:
    """Each class plus its 90/180/270-degree rotations as extra classes (names get /rotN)."""
    groups, names = [], []
    for angle in ROTATIONS:
        rotated = torch.rot90(data.images, k=angle // 90, dims=(-2, -1))
        for k, name in enumerate(data.class_names):
            groups.append(rotated[data.offsets[k] : data.offsets[k + 1]])
            names.append(name if angle == 0 else f"{name}/rot{angle}")
    return ClassSplit.from_groups(groups, names)

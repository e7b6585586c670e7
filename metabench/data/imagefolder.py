"""A user's own images: one sub-folder of ``data_root`` per class, split by class.

Every file PIL can open counts as an image (hidden files are skipped). Images are converted
to RGB (or grey with ``color="grey"``) and resized to ``image_size`` x ``image_size``
(default 84) with PIL's Lanczos antialiasing, or kept at their size with
``image_size="keep"`` (all images must then share one size). Decoded arrays are cached as
an ``.npz`` keyed by the folder's contents, so a changed folder is decoded afresh.

Splits, fixed and class-disjoint, either

* by seed: classes ordered by ``blake2b(f"{seed}:{class}")``, then cut by ``fractions``
  (train, validation, test; default 0.64 / 0.16 / 0.20 as mini-ImageNet's 64/16/20), or
* by ``split_file``: JSON (``{"class": "train", ...}`` or ``{"train": [classes], ...}``)
  or CSV (rows ``class,split``, an optional ``class,split`` header). Classes the file does
  not name are left out.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from metabench.data.base import (
    ClassificationDataset,
    ClassSplit,
    cache_root,
    cached_arrays,
    decode_image,
)
from metabench.errors import MetabenchError
from metabench.protocol import SPLITS

COLORS = {"rgb": "RGB", "grey": "L", "gray": "L"}


class ImageFolder(ClassificationDataset):
    """Images in one sub-folder per class, split by class by seed or by a split file."""

    name = "imagefolder"

    def __init__(
        self,
        data_root: str | Path | None = None,
        image_size: int | str = 84,
        color: str = "rgb",
        fractions: tuple[float, float, float] | str = (0.64, 0.16, 0.20),
        seed: int = 0,
        split_file: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.data_root = Path(data_root).expanduser() if data_root is not None else None
        self.image_size = _parse_size(image_size)
        if color not in COLORS:
            raise MetabenchError(f"imagefolder color '{color}' is not known; expected rgb or grey")
        self.mode = COLORS[color]
        self.fractions = _parse_fractions(fractions)
        self.seed = int(seed)
        self.split_file = Path(split_file).expanduser() if split_file is not None else None
        self.cache_dir = cache_root(cache_dir)
        channels = 3 if self.mode == "RGB" else 1
        side = self.image_size or 0
        self.input_shape = (channels, side, side)
        self.source = f"image folder {self.data_root}"
        self._all: ClassSplit | None = None

    def load_split(self, split: str) -> ClassSplit:
        data = self._load_all()
        assignment = self._assignment(data.class_names)
        return data.subset([i for i, n in enumerate(data.class_names) if assignment.get(n) == split])

    def _load_all(self) -> ClassSplit:
        if self._all is None:
            files = self._class_files()
            assert self.data_root is not None  # _class_files() has checked it
            listing = [(c, [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in ps])
                       for c, ps in files.items()]
            key = hashlib.blake2b(
                repr((str(self.data_root.resolve()), self.image_size, self.mode, listing)).encode(),
                digest_size=8,
            ).hexdigest()
            path = self.cache_dir / f"imagefolder-{key}.npz"
            arrays = cached_arrays(path, lambda: self._decode(files))
            self._all = ClassSplit.from_counts(arrays["images"], arrays["counts"], list(arrays["names"]))
            self.input_shape = tuple(self._all.images.shape[1:])
        return self._all

    def _class_files(self) -> dict[str, list[Path]]:
        root = self.data_root
        if root is None or not root.is_dir():
            where = "no --data-root was given" if root is None else f"{root} is not a folder"
            raise MetabenchError(
                f"imagefolder: {where}; expected a folder with one sub-folder of images per class"
            )
        extensions = {ext.lower() for ext in Image.registered_extensions()}
        files = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = sorted(p for p in folder.iterdir()
                            if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in extensions)
            if not images:
                raise MetabenchError(
                    f"imagefolder: class folder {folder} holds no images (expected files such "
                    "as .png or .jpg)"
                )
            files[folder.name] = images
        if not files:
            raise MetabenchError(
                f"imagefolder: {root} has no class sub-folders; expected one sub-folder of "
                "images per class"
            )
        return files

    def _decode(self, files: dict[str, list[Path]]) -> dict[str, np.ndarray]:
        size = (self.image_size, self.image_size) if self.image_size else None
        paths = [p for ps in files.values() for p in ps]
        images = [decode_image(p, str(p), size, self.mode) for p in paths]
        odd = next((p for p, a in zip(paths, images, strict=True) if a.shape != images[0].shape), None)
        if odd is not None:
            raise MetabenchError(
                f"imagefolder: image {odd} is {images[paths.index(odd)].shape[-1]} wide while "
                f"{paths[0]} is {images[0].shape[-1]}; give image_size=N to resize them all"
            )
        return {
            "images": np.stack(images),
            "counts": np.array([len(ps) for ps in files.values()], dtype=np.int64),
            "names": np.array(list(files)),
        }

    def _assignment(self, classes: list[str]) -> dict[str, str]:
        """Class name -> split name."""
        if self.split_file is not None:
            return _read_split_file(self.split_file, classes)
        order = sorted(classes, key=lambda c: hashlib.blake2b(f"{self.seed}:{c}".encode()).digest())
        sizes = _split_sizes(len(order), self.fractions)
        bounds = np.cumsum([0, *sizes])
        return {c: SPLITS[int(np.searchsorted(bounds, i, side="right")) - 1] for i, c in enumerate(order)}


def _split_sizes(count: int, fractions: tuple[float, float, float]) -> list[int]:
    """Classes per split: floors of ``count * fraction``, remainders to the largest parts."""
    exact = [count * f for f in fractions]
    sizes = [int(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (sizes[i] - exact[i], i))
    for i in by_remainder[: count - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _read_split_file(path: Path, classes: list[str]) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as error:
        raise MetabenchError(f"imagefolder: cannot read split file {path}: {error.strerror}") from None
    mapping = _parse_json_split(path, text) if path.suffix.lower() == ".json" else _parse_csv_split(text)
    for name, split in mapping.items():
        if split not in SPLITS:
            raise MetabenchError(
                f"imagefolder: split file {path} puts class '{name}' in split '{split}'; "
                f"expected one of {', '.join(SPLITS)}"
            )
        if name not in classes:
            raise MetabenchError(
                f"imagefolder: split file {path} names class '{name}', which has no folder "
                "in the data root"
            )
    return mapping


def _parse_json_split(path: Path, text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MetabenchError(f"imagefolder: split file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise MetabenchError(
            f"imagefolder: split file {path} must hold a JSON object (class -> split)"
        )
    if data and all(isinstance(v, list) for v in data.values()):
        return {str(c): str(split) for split, names in data.items() for c in names}
    return {str(c): str(split) for c, split in data.items()}


def _parse_csv_split(text: str) -> dict[str, str]:
    rows = [r for r in csv.reader(text.splitlines()) if r and any(x.strip() for x in r)]
    if rows and [x.strip().lower() for x in rows[0]] == ["class", "split"]:
        rows = rows[1:]
    mapping = {}
    for row in rows:
        if len(row) != 2:
            raise MetabenchError(
                f"imagefolder: split file row {','.join(row)!r} has {len(row)} fields; "
                "expected class,split"
            )
        mapping[row[0].strip()] = row[1].strip()
    return mapping


def _parse_size(size: int | str) -> int | None:
    if str(size).strip().lower() == "keep":
        return None
    try:
        value = int(size)
    except ValueError:
        value = 0
    if value < 1:
        raise MetabenchError(
            f"imagefolder image_size={size!r} is invalid; expected a positive integer or 'keep'"
        )
    return value


def _parse_fractions(fractions: tuple[float, float, float] | str) -> tuple[float, float, float]:
    try:
        parts = fractions.split(",") if isinstance(fractions, str) else list(fractions)
        values = tuple(float(f) for f in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise MetabenchError(
            f"imagefolder fractions={fractions!r} are invalid; expected three non-negative "
            "numbers (train, validation, test) that sum to 1"
        )
    return values

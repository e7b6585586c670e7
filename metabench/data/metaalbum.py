"""``metaalbum``: a data set in Meta-Album's folder format (Ullah et al. 2022).

The format, as Meta-Album distributes it (ihsaan-ullah/meta-album ``DataFormat/README.md``)::

    NAME/
    ├── labels.csv    FILE_NAME,CATEGORY,SUPER_CATEGORY (at least these columns)
    ├── info.json     optional: image_column_name, category_column_name, ...
    └── images/       the files labels.csv names (128 x 128 in Meta-Album's release)

``--data-root`` (or ``--dataset-option metaalbum.data_root=...``) points at one such folder,
or at a parent holding several: then ``source=NAME`` picks one (the data set name
``metaalbum:NAME`` does the same, so ``metaalbum:BRD+metaalbum:INS`` is a multi-source data
set), and ``source=all`` pools them (classes named ``NAME/CATEGORY``). Column names come
from ``info.json`` where it gives them. Classes are split 70 / 15 / 15 (train, validation,
test) in a seeded order, as Meta-Album's within-domain code splits them
(``Code/Trainers/train_within_domain_fsl.py``: ``train_test_split_classes`` with 0.3, then
0.5 of the rest); a ``split_file`` gives another split. Images are resized to
``image_size`` (default 128, Meta-Album's size) and cached like
:class:`metabench.data.imagefolder.ImageFolder`'s.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from metabench.data.base import ClassificationDataset
from metabench.data.imagefolder import ImageFolder
from metabench.errors import MetabenchError
from metabench.protocol import SPLITS

LABELS = "labels.csv"
FILE_COLUMN, CATEGORY_COLUMN = "FILE_NAME", "CATEGORY"
# Meta-Album's within-domain split: 70% of the classes to train, the rest halved.
FRACTIONS = (0.70, 0.15, 0.15)
ALL = "all"


class MetaAlbum(ImageFolder):
    """One Meta-Album data set folder (or several pooled), split by class."""

    name = "metaalbum"

    def __init__(
        self,
        data_root: str | Path | None = None,
        source: str | None = None,
        image_size: int | str = 128,
        color: str = "rgb",
        fractions: tuple[float, float, float] | str = FRACTIONS,
        seed: int = 0,
        split_file: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(data_root, image_size, color, fractions, seed, split_file, cache_dir)
        self.choice = source
        how = "split_file" if split_file is not None else "70/15/15 seeded class split"
        self.source = f"Meta-Album folder {self.data_root} ({how})"

    def _class_files(self) -> dict[str, list[Path]]:
        folders = self._folders()
        files: dict[str, list[Path]] = {}
        for folder in folders:
            prefix = f"{folder.name}/" if len(folders) > 1 else ""
            for category, paths in read_labels(folder).items():
                files[prefix + category] = paths
        return files

    def _folders(self) -> list[Path]:
        """The data set folders this instance reads (one, or all with ``source=all``)."""
        root = self.data_root
        if root is None or not root.is_dir():
            where = "no --data-root was given" if root is None else f"{root} is not a folder"
            raise MetabenchError(f"metaalbum: {where}; expected a Meta-Album data set folder "
                                 f"(with {LABELS} and images/) or a folder of them")
        if (root / LABELS).is_file() and self.choice in (None, root.name):
            return [root]
        found = sorted(p for p in root.iterdir() if (p / LABELS).is_file())
        if not found:
            raise MetabenchError(f"metaalbum: {root} holds no {LABELS}, nor do its sub-folders; "
                                 "expected Meta-Album's layout (NAME/labels.csv, NAME/images/)")
        if self.choice == ALL:
            return found
        if self.choice is not None:
            chosen = [p for p in found if p.name == self.choice]
            if not chosen:
                raise MetabenchError(f"metaalbum: source '{self.choice}' is not in {root}; "
                                     f"expected one of {', '.join(p.name for p in found)} or all")
            return chosen
        if len(found) > 1:
            raise MetabenchError(f"metaalbum: {root} holds {len(found)} data sets "
                                 f"({', '.join(p.name for p in found)}); pick one with "
                                 "--dataset-option metaalbum.source=NAME, or source=all")
        return found


def read_labels(folder: Path) -> dict[str, list[Path]]:
    """Category -> image paths of one Meta-Album folder, from its ``labels.csv``."""
    file_column, category_column = _columns(folder)
    path = folder / LABELS
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in (file_column, category_column) if c not in header]
        if missing:
            raise MetabenchError(f"metaalbum: {path} has no column {missing[0]}; its columns are "
                                 f"{', '.join(header) or '(none)'}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    files: dict[str, list[Path]] = {}
    for row in rows:
        image = folder / "images" / row[file_column]
        if not image.is_file():
            raise MetabenchError(f"metaalbum: {path} names {row[file_column]}, which is not in "
                                 f"{folder / 'images'}")
        files.setdefault(row[category_column], []).append(image)
    if not files:
        raise MetabenchError(f"metaalbum: {path} lists no images")
    return {category: sorted(paths) for category, paths in sorted(files.items())}


def _columns(folder: Path) -> tuple[str, str]:
    """The image and category column names (``info.json``'s, else Meta-Album's defaults)."""
    info_path = folder / "info.json"
    if not info_path.is_file():
        return FILE_COLUMN, CATEGORY_COLUMN
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MetabenchError(f"metaalbum: {info_path} is not valid JSON: {error}") from None
    return (str(info.get("image_column_name", FILE_COLUMN)),
            str(info.get("category_column_name", CATEGORY_COLUMN)))


def export_metaalbum(dataset: ClassificationDataset, folder: Path,
                     splits: Sequence[str] = SPLITS) -> Path:
    """Write ``splits`` of ``dataset`` as a Meta-Album folder (``labels.csv``, ``info.json``,
    ``images/*.png``); categories are the class names, prefixed by the split."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rows, counts = [], []
    for split in splits:
        data = dataset.split(split)
        images = data.images if data.images.dtype == torch.uint8 else (
            (data.images.clamp(0, 1) * 255).round().to(torch.uint8))
        offsets = data.offsets.tolist()
        for k, name in enumerate(data.class_names):
            category = (name if len(splits) == 1 else f"{split}-{name}").replace("/", "_")
            category = category.replace(",", "_")
            counts.append(offsets[k + 1] - offsets[k])
            for i in range(offsets[k], offsets[k + 1]):
                file_name = f"{category}-{i - offsets[k]}.png"
                array = images[i].numpy()
                mode = "L" if array.shape[0] == 1 else "RGB"
                picture = array[0] if mode == "L" else array.transpose(1, 2, 0)
                Image.fromarray(picture, mode).save(images_dir / file_name)
                rows.append((file_name, category, split))
    with (folder / LABELS).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([FILE_COLUMN, CATEGORY_COLUMN, "SUPER_CATEGORY"])
        writer.writerows(rows)
    info = {"dataset_name": folder.name, "dataset_description": f"metabench {dataset.name}",
            "total_categories": len(counts), "image_column_name": FILE_COLUMN,
            "category_column_name": CATEGORY_COLUMN, "super_category_column_name": "SUPER_CATEGORY",
            "minimum_images_per_category": min(counts), "maximum_images_per_category": max(counts)}
    (folder / "info.json").write_text(json.dumps(info, indent=2))
    return folder

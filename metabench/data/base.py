"""What a data set offers the episode sampler: class-grouped images, or a task family.

How a data set is built (the one convention every caller uses): a data set is registered
with a factory, usually its class, and built with
``metabench.data.build_dataset(name, data_root=..., download=..., cache_dir=..., **options)``.
The three standard options are passed only to factories whose signature names them (or
takes ``**kwargs``), so a factory declares just what it uses:

* ``data_root``: the folder holding the data set's files (CLI ``--data-root``);
* ``download``: fetch missing files from the official source (CLI ``--download``); never
  done unless asked;
* ``cache_dir``: where decoded arrays are cached (default: env ``METABENCH_CACHE``, else
  ``~/.cache/metabench``; see :func:`cache_root`).

Other options (``split="lake"``, ``image_size=84``) are keyword arguments of the factory.
Construction is cheap and does no I/O; files are read on first use of a split, and missing
or broken data raises a one-line :class:`MetabenchError` naming the path and the remedy.
"""

from __future__ import annotations

import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from metabench.data.vector_env import VectorEnv
from metabench.errors import MetabenchError
from metabench.protocol import CLASSIFICATION, REGRESSION, RL, SPLITS, TaskSpec


@dataclass
class ClassSplit:
    """The examples of one split, grouped by class and stored contiguously.

    Class ``k`` owns ``images[offsets[k]:offsets[k + 1]]``. Images are ``uint8`` (scaled to
    ``[0, 1]`` floats when an episode is built) or already floating point.
    """

    images: Tensor
    offsets: Tensor
    class_names: list[str]

    def __post_init__(self) -> None:
        self.offsets = self.offsets.to(torch.int64).contiguous()
        self.counts = self.offsets[1:] - self.offsets[:-1]
        if len(self.offsets) != len(self.class_names) + 1:
            raise MetabenchError(
                f"ClassSplit has {len(self.offsets)} offsets for {len(self.class_names)} classes; "
                "expected one more offset than classes"
            )
        if int(self.offsets[-1]) != len(self.images) or bool((self.counts < 0).any()):
            raise MetabenchError(
                f"ClassSplit offsets end at {int(self.offsets[-1])} but there are "
                f"{len(self.images)} images; expected non-decreasing offsets ending there"
            )
        # numpy views for the sampler's index arithmetic (no copies)
        self.offsets_np = self.offsets.numpy()
        self.counts_np = self.counts.numpy()

    @classmethod
    def from_dense(cls, images: Tensor, class_names: list[str]) -> ClassSplit:
        """Build from a ``[classes, examples, C, H, W]`` tensor."""
        classes, per_class = images.shape[:2]
        offsets = torch.arange(classes + 1, dtype=torch.int64) * per_class
        return cls(images.reshape(classes * per_class, *images.shape[2:]), offsets, class_names)

    @classmethod
    def from_groups(cls, groups: list[Tensor], class_names: list[str]) -> ClassSplit:
        """Build from one ``[examples, C, H, W]`` tensor per class."""
        counts = torch.tensor([len(g) for g in groups], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        return cls(torch.cat(groups) if groups else torch.empty(0), offsets, class_names)

    @classmethod
    def from_counts(cls, images: np.ndarray | Tensor, counts: Any, class_names: list[str]) -> ClassSplit:
        """Build from images grouped by class and the number of images of each class."""
        counts = torch.as_tensor(np.asarray(counts), dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        return cls(torch.as_tensor(images), offsets, [str(name) for name in class_names])

    def subset(self, classes: list[int] | Tensor) -> ClassSplit:
        """A split holding only ``classes`` (indices into this one), in that order."""
        index = torch.as_tensor(classes, dtype=torch.int64)
        counts = self.counts[index]
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        if len(index) and self.uniform:
            per_class = self.min_examples
            rows = (self.offsets[index].unsqueeze(1) + torch.arange(per_class)).reshape(-1)
        else:
            rows = torch.cat(
                [torch.arange(int(self.offsets[c]), int(self.offsets[c + 1])) for c in index]
                or [torch.zeros(0, dtype=torch.int64)]
            )
        names = [self.class_names[int(c)] for c in index]
        return ClassSplit(self.images.index_select(0, rows), offsets, names)

    def float_images(self, device: torch.device, max_bytes: int) -> Tensor | None:
        """The images as ``[0, 1]`` floats on ``device``, built once, or None above ``max_bytes``.

        Episodes gather from this copy when it exists, saving a conversion per episode; the
        values are exactly those of converting the gathered ``uint8`` images.
        """
        if self.images.dtype != torch.uint8:
            return self.images if self.images.device == device else None
        if self.images.numel() * 4 > max_bytes:
            return None
        cache = self.__dict__.setdefault("_float_cache", {})
        if device not in cache:
            cache[device] = to_unit_float(self.images.to(device))
        return cache[device]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def min_examples(self) -> int:
        return int(self.counts.min()) if self.num_classes else 0

    @property
    def uniform(self) -> bool:
        """True when every class has the same number of examples (the fast sampling path)."""
        if "_uniform" not in self.__dict__:
            self._uniform = self.num_classes > 0 and int(self.counts.max()) == self.min_examples
        return self._uniform


class ClassificationDataset(ABC):
    """A few-shot classification data set with fixed, class-disjoint splits."""

    name: str = ""
    task_types = frozenset({CLASSIFICATION})
    input_shape: tuple[int, ...] = (1, 28, 28)
    source: str = ""

    def __init__(self) -> None:
        self._splits: dict[str, ClassSplit] = {}

    def split(self, split: str) -> ClassSplit:
        """The examples of ``split`` (loaded once, then cached in memory)."""
        check_split(self.name, split)
        if split not in self._splits:
            self._splits[split] = self.load_split(split)
        return self._splits[split]

    @abstractmethod
    def load_split(self, split: str) -> ClassSplit:
        """Load one split from disk or build it."""

    def describe(self) -> dict[str, Any]:
        """Classes per split, examples per class, and where the data comes from."""
        splits = {name: self.split(name) for name in SPLITS}
        return {
            "name": self.name,
            "task_type": CLASSIFICATION,
            "classes": {name: s.num_classes for name, s in splits.items()},
            "examples_per_class": _examples_summary(splits.values()),
            "input_shape": list(self.input_shape),
            "source": self.source,
        }


class InMemoryDataset(ClassificationDataset):
    """A classification data set over splits already in memory (tests, benchmarks, notebooks)."""

    def __init__(self, name: str, splits: dict[str, ClassSplit], source: str = "in memory") -> None:
        super().__init__()
        self.name = name
        self.source = source
        self._given = dict(splits)
        first = next(iter(self._given.values()), None)
        if first is not None:
            self.input_shape = tuple(first.images.shape[1:])

    def load_split(self, split: str) -> ClassSplit:
        if split not in self._given:
            raise MetabenchError(
                f"data set {self.name} has no '{split}' split; it has {', '.join(self._given)}"
            )
        return self._given[split]


class RegressionDataset(ABC):
    """A family of regression tasks; each episode draws one task."""

    name: str = ""
    task_types = frozenset({REGRESSION})
    input_shape: tuple[int, ...] = (1,)
    source: str = ""

    @abstractmethod
    def sample_task(
        self, generator: torch.Generator, split: str, spec: TaskSpec
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draw one task: ``support_x, support_y, query_x, query_y`` as float tensors."""

    def describe(self) -> dict[str, Any]:
        """What the task family is and where it comes from."""
        return {
            "name": self.name,
            "task_type": REGRESSION,
            "classes": {name: None for name in SPLITS},
            "examples_per_class": None,
            "input_shape": list(self.input_shape),
            "source": self.source,
        }


class RLDataset:
    """A family of tasks of one environment; the splits differ through the episode seeds
    (the task family is continuous, as the sinusoid's is)."""

    task_types = frozenset({RL})

    def __init__(self, env: VectorEnv, source: str) -> None:
        self.env = env
        self.name = env.name
        self.source = source
        self.input_shape: tuple[int, ...] = (env.observation_dim,)

    def sample_task(self, generator: torch.Generator, split: str, spec: TaskSpec) -> Tensor:
        """One task's parameters ``[task_dim]``."""
        return self.env.sample_tasks(1, generator)[0]

    def describe(self) -> dict[str, Any]:
        """What the task family is and where it comes from."""
        return {"name": self.name, "task_type": RL, "classes": {name: None for name in SPLITS},
                "examples_per_class": None, "input_shape": list(self.input_shape),
                "source": self.source}


def to_unit_float(images: Tensor) -> Tensor:
    """``uint8`` images as floats in ``[0, 1]`` (other dtypes: as float32)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).mul_(1.0 / 255.0)
    return images.float()


def check_split(dataset: str, split: str) -> None:
    """Fail clearly on a split name that is not train, validation or test."""
    if split not in SPLITS:
        raise MetabenchError(
            f"split '{split}' of {dataset} is not known; expected one of {', '.join(SPLITS)}"
        )


def _examples_summary(splits: Any) -> int | str:
    counts = torch.cat([s.counts for s in splits if s.num_classes])
    low, high = int(counts.min()), int(counts.max())
    return low if low == high else f"{low}-{high}"


CACHE_ENV_VAR = "METABENCH_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else env ``METABENCH_CACHE``, else ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "metabench"


def cached_arrays(
    path: Path, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Arrays from the ``.npz`` at ``path``, built and saved first when it is absent.

    The file is written to a temporary name in the same folder and renamed into place, so
    an interrupted build never leaves a half-written cache; an unreadable cache is rebuilt.
    """
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError):
            pass  # unreadable (e.g. truncated by a full disk): rebuild below
    arrays = build()
    save_npz_atomic(path, arrays)
    return arrays


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as ``.npz`` through a temporary file and a rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise MetabenchError(f"cannot write the cache {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, allow_pickle=False, **arrays)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise MetabenchError(f"cannot write the cache {path}: {error}") from None
        raise


def decode_image(
    source: bytes | str | os.PathLike,
    where: str,
    size: tuple[int, int] | None,
    mode: str = "L",
) -> np.ndarray:
    """An image file (bytes or path) as a ``uint8`` array ``[C, H, W]``.

    Converted to ``mode`` ("L" grey or "RGB") and resized to ``size`` (width, height) with
    PIL's antialiasing Lanczos filter unless ``size`` is None. ``where`` names the image
    in the error raised for a corrupt or unreadable file.
    """
    try:
        file = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        with Image.open(file) as opened:
            image = opened.convert(mode)
            if size is not None and image.size != size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise MetabenchError(f"cannot read image {where}: {error}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


Dataset = ClassificationDataset | RegressionDataset | RLDataset

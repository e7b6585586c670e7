"""``glyphs``: the embedded, Omniglot-like default data set, rendered from matplotlib's fonts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from metabench.data import glyphs_distort, glyphs_render
from metabench.data.base import ClassificationDataset, ClassSplit
from metabench.data.glyphs_distort import Distortion
from metabench.data.glyphs_render import FONTS, SPLIT_GROUPS, GlyphTable
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterDataset
from metabench.protocol import SPLITS

CACHE_ENV_VAR = "METABENCH_CACHE"
FORMAT_VERSION = 2  # bump when the build changes, so old caches are not read
EXAMPLES = 20
CHUNK_CLASSES = 128  # classes distorted together: bounds memory at ~ 100 MB


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$METABENCH_CACHE``, else ``~/.cache/metabench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "metabench"


@dataclass
class GlyphArrays:
    """A built glyph set: ``images[k]`` holds the EXAMPLES 28x28 images of class ``k``."""

    images: np.ndarray  # [classes, EXAMPLES, 28, 28] uint8, bright strokes on black
    codepoints: np.ndarray  # [classes] int32
    splits: np.ndarray  # [classes] int8, index into SPLITS
    fonts: np.ndarray  # [classes, EXAMPLES] int8, index into FONTS


class Glyphs(ClassificationDataset):
    """Omniglot-like characters rendered from the fonts matplotlib ships; no download.

    Characters come from 22 fonts (DejaVu Sans, Sans Mono and Serif in four styles each,
    STIX General in four, and Computer Modern roman, bold, sans, italic, typewriter and math
    italic for ASCII letters and digits). A character is kept when at least 5 fonts have a
    glyph for it in their cmap; look-alikes (Latin A, Greek Alpha, Cyrillic A) keep only the
    first, in split order, so no test character copies a training one. Each of the 20
    examples of a class is one of its fonts (cycled evenly, in a seeded order) under its own
    seeded distortion: rotation, scale, shear, translation, a pen width its strokes are
    eroded or dilated towards, and an elastic warp (see ``Distortion``). Images are 28x28
    uint8, bright strokes on a dark background.

    Splits, fixed, by Unicode script for letters and by block for symbols (classes with
    matplotlib 3.11: 1,137 train, 321 validation, 313 test):

    - train: Latin script; Basic Latin and Latin-1 digits and symbols, Currency Symbols,
      Letterlike Symbols, Number Forms, Mathematical Operators, Supplemental Mathematical
      Operators, Miscellaneous Mathematical Symbols-A and -B, Miscellaneous Technical,
      Geometric Shapes, Miscellaneous Symbols, Dingbats.
    - validation: Greek script; Arrows, Supplemental Arrows-A and -B, Miscellaneous Symbols
      and Arrows.
    - test: Cyrillic, Armenian, Georgian and Lao scripts, none of them seen in training.

    The set is built once (seconds) and cached as one ``.npz`` in ``cache_dir``
    (default ``$METABENCH_CACHE`` or ``~/.cache/metabench``). ``max_classes_per_split``
    keeps only the first classes of each split (a quick build with the same images).
    """

    name = "glyphs"
    source = "embedded: rendered from matplotlib's DejaVu, STIX and Computer Modern fonts"

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        max_classes_per_split: int | None = None,
        distortion: Distortion | None = None,
    ) -> None:
        super().__init__()
        if max_classes_per_split is not None and max_classes_per_split < 1:
            raise MetabenchError(
                f"max_classes_per_split={max_classes_per_split} is too small: expected >= 1"
            )
        self.cache_dir = cache_root(cache_dir)
        self.seed = int(seed)
        self.max_classes_per_split = max_classes_per_split
        self.distortion = distortion or Distortion()
        self.build_seconds: float | None = None
        self._arrays: GlyphArrays | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Everything the built bytes depend on; its hash names the cache file."""
        return {
            "format": FORMAT_VERSION,
            "seed": self.seed,
            "examples": EXAMPLES,
            "max_classes_per_split": self.max_classes_per_split,
            "distortion": self.distortion.as_dict(),
            "matplotlib": matplotlib.__version__,
        }

    @property
    def cache_path(self) -> Path:
        """The ``.npz`` file this configuration is cached in."""
        text = json.dumps(self.config, sort_keys=True)
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        return self.cache_dir / f"glyphs-v{FORMAT_VERSION}-{digest}.npz"

    @property
    def arrays(self) -> GlyphArrays:
        """The whole set, read from the cache or built (and cached) on first use."""
        if self._arrays is None:
            self._arrays = self._load_or_build()
        return self._arrays

    def load_split(self, split: str) -> ClassSplit:
        arrays = self.arrays
        rows = np.flatnonzero(arrays.splits == SPLITS.index(split))
        images = torch.from_numpy(arrays.images[rows]).unsqueeze(2)  # [classes, 20, 1, 28, 28]
        names = [class_name(int(c)) for c in arrays.codepoints[rows]]
        return ClassSplit.from_dense(images, names)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["groups"] = {split: list(groups) for split, groups in SPLIT_GROUPS.items()}
        info["cache"] = str(self.cache_path)
        return info

    def _load_or_build(self) -> GlyphArrays:
        path = self.cache_path
        expected = json.dumps(self.config, sort_keys=True)
        if path.exists():
            arrays = read_cache(path, expected)
            if arrays is not None:
                return arrays
        start = time.perf_counter()
        arrays = build_glyphs(self.seed, self.max_classes_per_split, self.distortion)
        self.build_seconds = time.perf_counter() - start
        write_cache(path, arrays, expected)
        return arrays


def class_name(codepoint: int) -> str:
    """A class's name: its script or block, then its code point (``Cyrl:U+0416``)."""
    return f"{glyphs_render.group_of(codepoint)}:U+{codepoint:04X}"


def build_glyphs(
    seed: int = 0, max_classes_per_split: int | None = None, distortion: Distortion | None = None
) -> GlyphArrays:
    """Render, select and distort the whole set (deterministic for a given seed)."""
    spec = distortion or Distortion()
    selection = glyphs_render.select_characters()
    if max_classes_per_split is not None:
        selection = selection.subset(_first_of_each_split(selection.splits, max_classes_per_split))
    table = glyphs_render.render_table(selection)
    images, fonts = [], []
    for start in range(0, len(table.codepoints), CHUNK_CLASSES):
        classes = range(start, min(start + CHUNK_CLASSES, len(table.codepoints)))
        chunk_images, chunk_fonts = _distort_classes(table, classes, seed, spec)
        images.append(chunk_images)
        fonts.append(chunk_fonts)
    return GlyphArrays(
        images=np.concatenate(images).reshape(-1, EXAMPLES, glyphs_distort.SIZE, glyphs_distort.SIZE),
        codepoints=table.codepoints,
        splits=table.splits,
        fonts=np.concatenate(fonts).reshape(-1, EXAMPLES),
    )


def _first_of_each_split(splits: np.ndarray, count: int) -> np.ndarray:
    picks = [np.flatnonzero(splits == s)[:count] for s in range(len(SPLITS))]
    return np.concatenate(picks)


def _distort_classes(
    table: GlyphTable, classes: range, seed: int, spec: Distortion
) -> tuple[np.ndarray, np.ndarray]:
    rows, draws = [], []
    for k in classes:
        rng = np.random.default_rng([seed, int(table.codepoints[k])])
        renderings = table.renderings_of(k)
        picks = renderings[_font_order(rng, len(renderings))]
        rows.append(picks)
        draws.append(glyphs_distort.draw(rng, table.widths[picks], spec))
    picked = np.concatenate(rows)
    canvases = torch.from_numpy(table.canvases[picked])
    batch = glyphs_distort.DistortionDraws.concat(draws)
    return glyphs_distort.apply(canvases, batch, spec).numpy(), table.font[picked]


def _font_order(rng: np.random.Generator, fonts: int) -> np.ndarray:
    """EXAMPLES font picks using every font equally often (up to one), in a seeded order."""
    rounds = -(-EXAMPLES // fonts)
    return np.concatenate([rng.permutation(fonts) for _ in range(rounds)])[:EXAMPLES]


def read_cache(path: Path, expected_config: str) -> GlyphArrays | None:
    """The cached set, or None when the file is unreadable, truncated or from another config."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["config"]) != expected_config:
                return None
            arrays = GlyphArrays(
                data["images"], data["codepoints"], data["splits"], data["fonts"]
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    return arrays if _consistent(arrays) else None


def _consistent(arrays: GlyphArrays) -> bool:
    classes = len(arrays.codepoints)
    shape = (classes, EXAMPLES, glyphs_distort.SIZE, glyphs_distort.SIZE)
    return (
        arrays.images.shape == shape
        and arrays.images.dtype == np.uint8
        and arrays.splits.shape == (classes,)
        and arrays.fonts.shape == (classes, EXAMPLES)
        and bool(np.all((arrays.splits >= 0) & (arrays.splits < len(SPLITS))))
    )


def write_cache(path: Path, arrays: GlyphArrays, config: str) -> None:
    """Write the set to ``path`` atomically: a temporary file in the same folder, then rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise MetabenchError(
            f"cannot write the glyphs cache in {path.parent}: {error.strerror}; "
            f"set another folder with {CACHE_ENV_VAR} or cache_dir"
        ) from None
    try:
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; a shared cache is not
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(
                stream,
                images=arrays.images,
                codepoints=arrays.codepoints,
                splits=arrays.splits,
                fonts=arrays.fonts,
                config=np.array(config),
                font_files=np.array([name for name, _ in FONTS]),
            )
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise MetabenchError(
            f"cannot write the glyphs cache {path}: {error.strerror or error}"
        ) from None
    except BaseException:
        _remove(temporary)
        raise


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@hookimpl
def register_datasets(register: RegisterDataset) -> None:
    register("glyphs", Glyphs, task_types={"classification"},
             description="embedded Omniglot-like characters from matplotlib's fonts (default)")

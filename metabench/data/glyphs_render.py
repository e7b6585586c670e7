"""Fonts, characters and clean renderings for the embedded ``glyphs`` data set.

Every font comes from matplotlib's ``mpl-data/fonts/ttf``. A character is kept when at
least MIN_FONTS fonts map it to a real glyph in their cmap (glyph index not 0) and its
first font draws ink for it; a font whose glyph draws no ink is not used for it.
Characters are grouped by Unicode script (letters) or block (symbols), and each group
belongs to one split, so test characters come from scripts never seen in training.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fontTools import unicodedata as unicode_data
from matplotlib import get_data_path
from matplotlib.ft2font import FT2Font, LoadFlags

from metabench.protocol import SPLITS

CANVAS = 56  # rendering resolution: twice the final 28x28, downsampled after distortion
GLYPH_BOX = 40  # the longer side of a clean glyph on the canvas, in canvas pixels
MIN_FONTS = 5  # fonts whose cmap must have a character
DUPLICATE_SIMILARITY = 0.95  # cosine of two first-font renderings above which they are one

ALNUM = frozenset(map(ord, string.ascii_letters + string.digits))
LETTERS = frozenset(map(ord, string.ascii_letters))

# (file, code points it may supply or None for all). The Computer Modern fonts are
# TeX-encoded: only letters (and digits for the text fonts) sit at their Unicode code points.
FONTS: tuple[tuple[str, frozenset[int] | None], ...] = (
    ("DejaVuSans.ttf", None),
    ("DejaVuSans-Bold.ttf", None),
    ("DejaVuSans-Oblique.ttf", None),
    ("DejaVuSans-BoldOblique.ttf", None),
    ("DejaVuSansMono.ttf", None),
    ("DejaVuSansMono-Bold.ttf", None),
    ("DejaVuSansMono-Oblique.ttf", None),
    ("DejaVuSansMono-BoldOblique.ttf", None),
    ("DejaVuSerif.ttf", None),
    ("DejaVuSerif-Bold.ttf", None),
    ("DejaVuSerif-Italic.ttf", None),
    ("DejaVuSerif-BoldItalic.ttf", None),
    ("STIXGeneral.ttf", None),
    ("STIXGeneralBol.ttf", None),
    ("STIXGeneralItalic.ttf", None),
    ("STIXGeneralBolIta.ttf", None),
    ("cmr10.ttf", ALNUM),
    ("cmb10.ttf", ALNUM),
    ("cmss10.ttf", ALNUM),
    ("cmti10.ttf", ALNUM),
    ("cmtt10.ttf", ALNUM),
    ("cmmi10.ttf", LETTERS),
)

# Letters split by script (ISO 15924 code), symbols by Unicode block. Groups not listed
# (punctuation, modifier letters, box drawing, block elements, Braille, ...) are left out.
SPLIT_GROUPS: dict[str, tuple[str, ...]] = {
    "train": (
        "Latn", "Basic Latin", "Latin-1 Supplement", "Currency Symbols", "Letterlike Symbols",
        "Number Forms", "Mathematical Operators", "Supplemental Mathematical Operators",
        "Miscellaneous Mathematical Symbols-A", "Miscellaneous Mathematical Symbols-B",
        "Miscellaneous Technical", "Geometric Shapes", "Miscellaneous Symbols", "Dingbats",
    ),
    "validation": (
        "Grek", "Arrows", "Supplemental Arrows-A", "Supplemental Arrows-B",
        "Miscellaneous Symbols and Arrows",
    ),
    "test": ("Cyrl", "Armn", "Geor", "Laoo"),
}
GROUP_SPLIT = {group: split for split, groups in SPLIT_GROUPS.items() for group in groups}


@dataclass
class Selection:
    """The chosen characters, in split order then code point order, and their fonts."""

    codepoints: np.ndarray  # [classes] int32
    splits: np.ndarray  # [classes] int8, index into SPLITS
    fonts: list[list[int]]  # per class, indices into FONTS whose cmap has the character

    def subset(self, classes: np.ndarray) -> Selection:
        """Only ``classes`` (indices, in order)."""
        return Selection(
            self.codepoints[classes], self.splits[classes], [self.fonts[k] for k in classes]
        )


@dataclass
class GlyphTable:
    """Clean renderings: ``canvases[i]`` is character ``codepoints[owner[i]]`` in font ``font[i]``."""

    codepoints: np.ndarray  # [classes] int32
    splits: np.ndarray  # [classes] int8, index into SPLITS
    canvases: np.ndarray  # [renderings, CANVAS, CANVAS] float32 in [0, 1]
    owner: np.ndarray  # [renderings] int32, class of each rendering (ascending)
    font: np.ndarray  # [renderings] int8, index into FONTS
    widths: np.ndarray  # [renderings] float64, mean stroke width in canvas pixels

    def renderings_of(self, index: int) -> np.ndarray:
        """Row indices of the clean renderings of class ``index``."""
        return np.flatnonzero(self.owner == index)


def font_dir() -> Path:
    """The folder of TrueType fonts shipped with matplotlib."""
    return Path(get_data_path()) / "fonts" / "ttf"


def group_of(codepoint: int) -> str:
    """The script code of a letter, or the block name of a shared (Common) character."""
    char = chr(codepoint)
    script = unicode_data.script(char)
    return unicode_data.block(char) if script in ("Zyyy", "Zinh") else script


def split_of(codepoint: int) -> str | None:
    """The split a character belongs to, or None when its group is left out."""
    return GROUP_SPLIT.get(group_of(codepoint))


def is_candidate(codepoint: int) -> bool:
    """A letter, number or symbol that is its own compatibility form and has a split."""
    char = chr(codepoint)
    if unicodedata.category(char)[0] not in "LNS":
        return False
    return unicodedata.normalize("NFKD", char) == char and split_of(codepoint) is not None


def font_charsets() -> list[set[int]]:
    """For each font of FONTS, the candidate code points its cmap maps to a real glyph."""
    charsets = []
    for filename, allowed in FONTS:
        cmap = FT2Font(str(font_dir() / filename)).get_charmap()
        codes = {c for c, glyph in cmap.items() if glyph != 0 and is_candidate(c)}
        charsets.append(codes & allowed if allowed is not None else codes)
    return charsets


def select_characters() -> Selection:
    """Characters in at least MIN_FONTS fonts whose first font draws ink, look-alikes dropped.

    Look-alikes (Latin A, Greek Alpha, Cyrillic A; o and O once scaled to one size) would
    otherwise be separate classes, or leak training characters into the test split: of each
    set only the first is kept, train before validation before test.
    """
    charsets = font_charsets()
    fonts_of: dict[int, list[int]] = {}
    for f, charset in enumerate(charsets):
        for codepoint in charset:
            fonts_of.setdefault(codepoint, []).append(f)
    pool = [c for c, fonts in fonts_of.items() if len(fonts) >= MIN_FONTS]
    pool.sort(key=lambda c: (SPLITS.index(split_of(c)), c))
    references = _reference_renderings(pool, fonts_of)
    pool = [c for c in pool if c in references]
    keep = _first_of_look_alikes(np.stack([references[c] for c in pool]))
    kept = [pool[i] for i in keep]
    return Selection(
        codepoints=np.asarray(kept, dtype=np.int32),
        splits=np.asarray([SPLITS.index(split_of(c)) for c in kept], dtype=np.int8),
        fonts=[sorted(fonts_of[c]) for c in kept],
    )


def _reference_renderings(pool: list[int], fonts_of: dict[int, list[int]]) -> dict[int, np.ndarray]:
    """Each character drawn in its first font (DejaVu Sans for nearly all); blanks left out."""
    renderers: dict[int, GlyphRenderer] = {}
    references = {}
    for codepoint in pool:
        first = min(fonts_of[codepoint])
        if first not in renderers:
            renderers[first] = GlyphRenderer(font_dir() / FONTS[first][0])
        rendering = renderers[first].render(codepoint)
        if rendering is not None:
            references[codepoint] = rendering[0]
    return references


def render_table(selection: Selection) -> GlyphTable:
    """Render every selected character in each of its fonts that draws ink."""
    canvases, widths, owner, font = [], [], [], []
    renderers = [GlyphRenderer(font_dir() / filename) for filename, _ in FONTS]
    for k, codepoint in enumerate(selection.codepoints.tolist()):
        for f in selection.fonts[k]:
            rendering = renderers[f].render(codepoint)
            if rendering is not None:
                canvases.append(rendering[0])
                widths.append(rendering[1])
                owner.append(k)
                font.append(f)
    return GlyphTable(
        codepoints=selection.codepoints,
        splits=selection.splits,
        canvases=np.stack(canvases),
        owner=np.asarray(owner, dtype=np.int32),
        font=np.asarray(font, dtype=np.int8),
        widths=np.asarray(widths, dtype=np.float64),
    )


class GlyphRenderer:
    """Draws single characters of one font, scaled so the longer side fills GLYPH_BOX."""

    probe_size = 64.0

    def __init__(self, path: Path) -> None:
        self.font = FT2Font(str(path))

    def render(self, codepoint: int) -> tuple[np.ndarray, float] | None:
        """The character centred on a CANVAS x CANVAS float canvas and its stroke width.

        None when the font draws no ink for it.
        """
        self.font.set_size(self.probe_size, 72)
        glyph = self.font.load_char(codepoint, flags=LoadFlags.NO_HINTING)
        longest = max(glyph.width, glyph.height) / 64.0  # 26.6 fixed point to pixels
        if longest <= 0:
            return None
        self.font.set_size(self.probe_size * GLYPH_BOX / longest, 72)
        self.font.set_text(chr(codepoint), flags=LoadFlags.NO_HINTING)
        self.font.draw_glyphs_to_bitmap(antialiased=True)
        return _centre(np.asarray(self.font.get_image()))


def _centre(bitmap: np.ndarray) -> tuple[np.ndarray, float] | None:
    rows = np.flatnonzero(bitmap.any(axis=1))
    cols = np.flatnonzero(bitmap.any(axis=0))
    if len(rows) == 0:
        return None
    crop = bitmap[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1][:CANVAS, :CANVAS]
    ink = int(crop.sum(dtype=np.int64))
    if ink < 255 * 4:  # no real ink: a blank or a hairline
        return None
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    top, left = (CANVAS - crop.shape[0]) // 2, (CANVAS - crop.shape[1]) // 2
    canvas[top : top + crop.shape[0], left : left + crop.shape[1]] = crop / np.float32(255.0)
    return canvas, _stroke_width(crop, ink)


def _stroke_width(crop: np.ndarray, ink: int) -> float:
    """Mean stroke width in pixels: twice the ink over the outline (exact integer sums)."""
    padded = np.pad(crop.astype(np.int32), 1)
    outline = np.abs(np.diff(padded, axis=0)).sum() + np.abs(np.diff(padded, axis=1)).sum()
    return 2.0 * ink / int(outline)


def _first_of_look_alikes(canvases: np.ndarray) -> list[int]:
    """Indices of the canvases not too similar to an earlier kept one (cosine at 28x28)."""
    half = CANVAS // 2
    small = canvases.reshape(-1, half, 2, half, 2).mean(axis=(2, 4)).reshape(len(canvases), -1)
    centred = small.astype(np.float64) - small.mean(axis=1, keepdims=True)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    similarity = unit @ unit.T
    keep: list[int] = []
    for i in range(len(unit)):
        if not keep or similarity[i, keep].max() < DUPLICATE_SIMILARITY:
            keep.append(i)
    return keep

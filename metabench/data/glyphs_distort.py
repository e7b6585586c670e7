"""Seeded distortions that turn clean font renderings into "hand-drawn" examples.

Each example gets a random affine map (rotation, scale, shear, translation), a pen width its
strokes are eroded or dilated towards, and an elastic warp (Simard et al. 2003), applied to
a batch at once with torch. Random draws come from one numpy generator per class, so a
class's examples do not depend on which other classes are built. The torch operations work
element by element, or (the elastic field) as products of 28-long rows, so the bytes do
not depend on the thread count; tests check it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from metabench.errors import MetabenchError

SIZE = 28  # final image side


@dataclass(frozen=True)
class Distortion:
    """How far each example strays from its clean font rendering.

    Angles in degrees, translation as a fraction of the image side, elastic ``alpha`` and
    ``sigma`` and the pen ``stroke_width`` in pixels of the final 28x28 image. Each example
    draws a pen width; its strokes are eroded or dilated towards it (as far as
    ``stroke_radius``, in half-pixels of the final image), so thin fonts thicken and bold
    ones thin out rather than vanishing or turning into blobs.

    The defaults are calibrated with ``benchmarks/glyphs_calibration.py`` (Conv4 ProtoNet,
    5-way 1-shot test accuracy: 43% with random weights, 88.6% after 2,000 training steps,
    about 2 minutes on 2 CPU cores). Issue 3's reference settings (rotation 25, scale
    0.75-1.1, shear 0.3, translation 0.12, alpha 6, random erosion or dilation) made this
    set too hard: 71% after 1,500 steps, as hairlines vanished and bold glyphs became blobs.
    """

    rotation: float = 15.0
    scale: tuple[float, float] = (0.8, 1.05)
    shear: float = 0.2
    translation: float = 0.08
    stroke_width: tuple[float, float] = (1.5, 3.0)
    stroke_radius: tuple[int, int] = (-1, 2)
    elastic_alpha: float = 5.0
    elastic_sigma: float = 3.0

    def __post_init__(self) -> None:
        for name in ("scale", "stroke_width", "stroke_radius"):
            low, high = getattr(self, name)
            if not low <= high:
                raise MetabenchError(f"Distortion {name}={(low, high)} is not a (low, high) range")
        if self.scale[0] <= 0 or self.stroke_width[0] <= 0:
            raise MetabenchError(
                f"Distortion scale={self.scale} and stroke_width={self.stroke_width} "
                "must be positive"
            )

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready record of the parameters."""
        return asdict(self)


@dataclass
class DistortionDraws:
    """The random draws of a batch of examples (numpy, float64 unless said)."""

    matrix: np.ndarray  # [B, 2, 3] output -> input coordinates, normalised to [-1, 1]
    stroke: np.ndarray  # [B] int, erosion (<0) or dilation (>0) radius on the canvas
    noise: np.ndarray  # [B, 2, SIZE, SIZE] float32 uniform in [-1, 1]

    @staticmethod
    def concat(parts: list[DistortionDraws]) -> DistortionDraws:
        """Join the draws of several classes into one batch."""
        return DistortionDraws(
            np.concatenate([p.matrix for p in parts]),
            np.concatenate([p.stroke for p in parts]),
            np.concatenate([p.noise for p in parts]),
        )


def draw(rng: np.random.Generator, widths: np.ndarray, spec: Distortion) -> DistortionDraws:
    """Draw the distortions of examples whose clean strokes are ``widths`` canvas pixels wide."""
    count = len(widths)
    angle = np.radians(rng.uniform(-spec.rotation, spec.rotation, count))
    scale = rng.uniform(*spec.scale, count)
    shear = rng.uniform(-spec.shear, spec.shear, count)
    shift = rng.uniform(-spec.translation, spec.translation, (count, 2)) * 2.0
    pen = rng.uniform(*spec.stroke_width, count) * 2.0  # in canvas pixels
    stroke = np.clip(np.round((pen - widths) / 2.0), *spec.stroke_radius).astype(np.int64)
    noise = rng.uniform(-1.0, 1.0, (count, 2, SIZE, SIZE)).astype(np.float32)
    return DistortionDraws(_inverse_affine(angle, scale, shear, shift), stroke, noise)


def _inverse_affine(
    angle: np.ndarray, scale: np.ndarray, shear: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Matrices taking output to input coordinates for ``x_out = R Sh S x_in + shift``."""
    cos, sin = np.cos(angle), np.sin(angle)
    # forward = rotation @ [[1, shear], [0, 1]] @ scale
    a, b = cos * scale, (cos * shear - sin) * scale
    c, d = sin * scale, (sin * shear + cos) * scale
    det = a * d - b * c
    inverse = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2) / det[:, None, None]
    offset = -np.einsum("bij,bj->bi", inverse, shift)
    return np.concatenate([inverse, offset[:, :, None]], axis=2)


def apply(canvases: Tensor, draws: DistortionDraws, spec: Distortion) -> Tensor:
    """Distort ``[B, H, W]`` float canvases (H = W = 2 * SIZE) into ``[B, SIZE, SIZE]`` uint8."""
    size = canvases.shape[-1]
    images = _stroke(canvases, torch.from_numpy(draws.stroke)).unsqueeze(1)
    field = _elastic_field(torch.from_numpy(draws.noise), spec, size)
    grid = _sampling_grid(torch.from_numpy(draws.matrix).float(), field)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    small = F.avg_pool2d(warped, size // SIZE)
    return small.squeeze(1).mul(255.0).round().clamp(0, 255).to(torch.uint8)


def _stroke(images: Tensor, radius: Tensor) -> Tensor:
    """Erode (radius < 0) or dilate (radius > 0) each ``[H, W]`` image by a square of that radius."""
    out = images.clone()
    for r in sorted(set(radius.tolist()) - {0}):
        rows = (radius == r).nonzero().squeeze(1)
        out[rows] = _morph(images[rows], abs(r), torch.maximum if r > 0 else torch.minimum)
    return out


def _morph(images: Tensor, radius: int, pick: Any) -> Tensor:
    """Separable running max (dilation) or min (erosion) over a (2 radius + 1)^2 square."""
    fill = 0.0 if pick is torch.maximum else 1.0
    for dim in (-1, -2):
        pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        padded = F.pad(images.unsqueeze(1), pad, value=fill).squeeze(1)
        length = images.shape[dim]
        result = padded.narrow(dim, 0, length)
        for offset in range(1, 2 * radius + 1):
            result = pick(result, padded.narrow(dim, offset, length))
        images = result
    return images


def _sampling_grid(matrix: Tensor, field: Tensor) -> Tensor:
    """``grid_sample`` grid ``[B, S, S, 2]``: the affine map of each output pixel plus ``field``.

    ``field`` (``[B, 2, S, S]``) is overwritten.
    """
    size = field.shape[-1]
    coords = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1  # pixel centres
    y, x = coords.view(1, size, 1), coords.view(1, 1, size)
    m = [[matrix[:, i, j].view(-1, 1, 1) for j in range(3)] for i in range(2)]
    for axis in range(2):  # in place: the field becomes the grid
        field[:, axis] += m[axis][0] * x + m[axis][2]
        field[:, axis] += m[axis][1] * y
    return field.permute(0, 2, 3, 1)


def _elastic_field(noise: Tensor, spec: Distortion, size: int) -> Tensor:
    """Displacements ``[B, 2, size, size]`` in grid units: Gaussian-smoothed noise times alpha.

    The ``SIZE x SIZE`` noise is smoothed (sigma in its pixels) and evaluated at the centres
    of the ``size x size`` canvas pixels in one step, as ``G @ noise @ G.T``.
    """
    if spec.elastic_alpha <= 0 or spec.elastic_sigma <= 0:
        return torch.zeros(noise.shape[0], 2, size, size)
    smoothing = _smoothing_matrix(spec.elastic_sigma, size, noise.shape[-1])
    field = smoothing @ noise @ smoothing.T
    return field * (spec.elastic_alpha * 2.0 / SIZE)


def _smoothing_matrix(sigma: float, size_out: int, size_in: int) -> Tensor:
    """Gaussian weights ``[size_out, size_in]`` from input pixels to output pixel centres."""
    centres = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    offsets = centres[:, None] - np.arange(size_in)[None, :]
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    return torch.from_numpy(weights.astype(np.float32))

"""The sinusoid regression benchmark of Finn et al. 2017."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metabench.data.base import RegressionDataset
from metabench.protocol import TaskSpec


class Sinusoid(RegressionDataset):
    """y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]; K-shot tasks.

    The task family is continuous, so splits differ only through the episode seeds.
    """

    name = "sinusoid"
    source = "generated (Finn et al. 2017, section 5.1)"
    amplitude = (0.1, 5.0)
    phase = (0.0, math.pi)
    x_range = (-5.0, 5.0)

    def sample_task(
        self, generator: torch.Generator, split: str, spec: TaskSpec
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        amplitude = _uniform(generator, *self.amplitude, size=1)
        phase = _uniform(generator, *self.phase, size=1)
        x = _uniform(generator, *self.x_range, size=spec.shots + spec.queries).unsqueeze(1)
        y = amplitude * torch.sin(x - phase)
        return x[: spec.shots], y[: spec.shots], x[spec.shots :], y[spec.shots :]


def _uniform(generator: torch.Generator, low: float, high: float, size: int) -> Tensor:
    return low + (high - low) * torch.rand(size, generator=generator)

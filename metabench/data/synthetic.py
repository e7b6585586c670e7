"""A small in-memory data set of noisy class prototypes, for smoke tests and benchmarks."""

from __future__ import annotations

import torch

from metabench.data.base import ClassificationDataset, ClassSplit
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterDataset
from metabench.protocol import SPLITS


class SyntheticImages(ClassificationDataset):
    """Each class is a random binary pattern; its examples are noisy, shifted copies.

    Built in memory in milliseconds from ``seed``; learnable, but not a benchmark of
    anything real. ``classes`` gives the classes of the train, validation and test splits.
    """

    name = "synthetic"
    source = "generated in memory (random prototypes + noise)"

    def __init__(
        self,
        classes: tuple[int, int, int] = (64, 16, 20),
        examples: int = 20,
        image_size: int = 28,
        seed: int = 0,
        noise: float = 0.3,
    ) -> None:
        super().__init__()
        self.classes = dict(zip(SPLITS, classes, strict=True))
        self.examples = examples
        self.input_shape = (1, image_size, image_size)
        self.seed = seed
        self.noise = noise

    def load_split(self, split: str) -> ClassSplit:
        generator = torch.Generator().manual_seed(self.seed * 7919 + SPLITS.index(split))
        count, size = self.classes[split], self.input_shape[-1]
        patterns = (torch.rand(count, 1, 1, size // 4, size // 4, generator=generator) > 0.5).float()
        patterns = torch.nn.functional.interpolate(
            patterns.squeeze(1), size=(size, size), mode="nearest"
        ).unsqueeze(1)
        shifts = torch.randint(-2, 3, (2,), generator=generator).tolist()
        images = patterns.expand(count, self.examples, 1, size, size).clone()
        images = torch.roll(images, shifts=shifts, dims=(-2, -1))
        noise = torch.rand(images.shape, generator=generator) < self.noise
        images = torch.where(noise, 1.0 - images, images)
        names = [f"{split}-{i:04d}" for i in range(count)]
        return ClassSplit.from_dense((images * 255).to(torch.uint8), names)


@hookimpl
def register_datasets(register: RegisterDataset) -> None:
    register("synthetic", SyntheticImages, task_types={"classification"},
             description="noisy random class prototypes built in memory, for smoke tests")

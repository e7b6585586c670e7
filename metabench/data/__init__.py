"""Data sets: the interfaces the episode sampler reads, and the built-in data sets."""

from __future__ import annotations

from metabench.data.base import ClassificationDataset, ClassSplit, RegressionDataset

__all__ = ["ClassSplit", "ClassificationDataset", "RegressionDataset"]

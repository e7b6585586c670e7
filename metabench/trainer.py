"""The trainer: meta-train one algorithm of a cell under its budget, validating at evenly
spaced points and keeping the best-on-validation weights.

:mod:`metabench.runner` builds the algorithm and calls :class:`Trainer`; this module knows
nothing of the cell runner, only the few things of its context that training needs
(:class:`TrainingContext`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from metabench.algorithm import Algorithm, episodes_per_step, uses_episodes
from metabench.batches import TrainBatches
from metabench.budget import Budget
from metabench.cell import Cell
from metabench.episodes import EpisodeSampler, ReadAhead, read_ahead
from metabench.evaluation import CellFailed, evaluate_batch
from metabench.metrics import metric_for
from metabench.plan import Plan
from metabench.profiling import PhaseProfiler
from metabench.protocol import CLASSIFICATION, EpisodeBatch, TaskSpec
from metabench.records import CellResult
from metabench.variable_episodes import mean_episode_images

TRAIN, VALIDATION = "train", "validation"

#: ``on_point(point, value)``: called after each validation point with the cell's validation
#: metric (0-based point index); it may raise to stop the training there (the runner's
#: ``Pruned``).
PointObserver = Callable[[int, float], None]


class TrainingProgress(Protocol):
    """Where the trainer reports its progress (the runner's progress sink)."""

    def phase(self, cell: Cell, name: str, total: float, unit: str) -> None:
        """A phase of ``cell`` starts: ``total`` units (episodes or seconds) to go."""

    def update(self, completed: float) -> None:
        """``completed`` units of the current phase are done."""


class TrainingContext(Protocol):
    """What the trainer reads from the run (:class:`metabench.runner.RunContext` is one)."""

    @property
    def plan(self) -> Plan:
        """The run's plan: budgets, validation points, checkpoint choice."""

    @property
    def progress(self) -> TrainingProgress:
        """Where progress goes."""

    def sampler(self, cell: Cell, split: str, spec: TaskSpec) -> EpisodeSampler:
        """The episode sampler of one split of the cell's data set."""

    def validation_batch(self, cell: Cell) -> EpisodeBatch:
        """The cell group's validation episodes (fresh copies)."""

    def environment(self, cell: Cell) -> Any:
        """The environment of an rl cell's task family (None for other task types)."""


@dataclass
class Where:
    """Where in a cell the work is, for the reason of a failure."""

    where: str = "setup"


class Trainer:
    """Meta-training under the budget, with validation at evenly spaced points.

    The budget counts episodes sampled for the algorithm plus the images it draws from
    its ``train_batches``, ``ways * (shots + queries)`` images of the cell's spec to an
    episode; ``result.train_episodes`` is that total rounded down to whole episodes.
    """

    def __init__(self, cell: Cell, context: TrainingContext, algorithm: Algorithm,
                 profiler: PhaseProfiler, result: CellResult, tracker: Where,
                 train_batches: TrainBatches | None = None) -> None:
        self.cell, self.context, self.algorithm = cell, context, algorithm
        self.profiler, self.result, self.tracker = profiler, result, tracker
        self.budget: Budget = context.plan.budget_for(cell)
        self.points = context.plan.config.val_points
        self.train_batches = train_batches
        spec = cell.spec
        self.episode_images: float = (spec.ways * (spec.shots + spec.queries)
                                      if spec.task_type == CLASSIFICATION else 0)
        if spec.variable:  # any-way any-shot: the mean size of the training episodes
            self.episode_images = mean_episode_images(context.sampler(cell, TRAIN, spec))
        self.episodes = 0  # training episodes sampled
        self.images = 0  # images drawn from train_batches
        self.sampler: EpisodeSampler | ReadAhead | None = None
        self.uses_episodes = _uses_episodes(algorithm)
        self.train_spec: TaskSpec | None = None  # None: trains on mini-batches
        if self.uses_episodes:
            self.batch_size = _episodes_per_step(algorithm)
            self.train_spec = getattr(algorithm, "train_task_spec", lambda s: s)(cell.spec)
            self.sampler = read_ahead(context.sampler(cell, TRAIN, self.train_spec),
                                      self.batch_size)
        elif train_batches is None:
            raise CellFailed(f"the algorithm trains on mini-batches (uses_episodes=False) but "
                             f"{cell.dataset} has none: it is not a classification data set")
        else:
            self.batch_size = 0
        self.report_progress = getattr(algorithm, "set_budget_progress", None)
        self.seconds = 0.0
        self.validation_seconds = 0.0
        self.losses: list[float] = []
        self.step_metrics: dict[str, list[float]] = {}
        self.best: tuple[float, dict[str, Any], int] | None = None
        self.on_point: PointObserver | None = None

    def train(self) -> None:
        """Train to the budget; the best-on-validation weights are loaded at the end (unless
        the run tests the last weights: ``checkpoint = "last"``)."""
        unit = {"episodes": "episodes", "steps": "steps"}.get(self.budget.kind, "s")
        self.context.progress.phase(self.cell, TRAIN, self.budget.amount, unit)
        for point in range(1, self.points + 1):
            steps_before = self.result.steps
            with self.profiler.phase(TRAIN):
                self._train_until(self._target(point))
            if self.result.steps > steps_before or point == self.points:
                self._validate()
            if self._exhausted():
                break
        if self.best is None or self.context.plan.config.checkpoint == "last":
            self.result.best_step = self.result.steps if self.best else None
            self.best = None
            return
        self.result.best_step = self.best[2]
        if self.best[2] != self.result.steps:
            self.algorithm.load_state_dict(self.best[1])
        self.best = None

    def _target(self, point: int) -> float:
        return self.budget.amount * point / self.points

    def _spent(self) -> float:
        if self.budget.kind == "steps":
            return self.result.steps
        if self.budget.kind != "episodes":
            return self.seconds
        if self.images:
            return self.episodes + self.images / self.episode_images
        return self.episodes

    def _exhausted(self) -> bool:
        return self._spent() >= self.budget.amount

    def _train_until(self, target: float) -> None:
        start = time.perf_counter()
        base = self.seconds
        while self._spent() < target:
            if self.report_progress is not None:
                self.report_progress(min(1.0, self._spent() / self.budget.amount))
            self._step()
            self.seconds = base + time.perf_counter() - start
            self.context.progress.update(self._spent())

    def _step(self) -> None:
        result = self.result
        size = self.batch_size
        if self.sampler is not None:
            if self.budget.kind == "episodes":
                size = min(size, math.ceil(self.budget.amount - self._spent()))
            batch = self.sampler.batch(range(self.episodes, self.episodes + size))
        else:
            batch = _no_episodes()
        self.tracker.where = f"meta_train_step (step {result.steps + 1})"
        drawn = self._drawn()
        with self.profiler.step():
            metrics = self.algorithm.meta_train_step(batch)
        loss = _loss_of(metrics, result.steps + 1)
        drawn = self._drawn() - drawn
        if not self.uses_episodes and drawn == 0:
            raise CellFailed(f"meta_train_step drew no images from setup.train_batches at step "
                             f"{result.steps + 1}; uses_episodes=False says it trains on them")
        result.steps += 1
        self.episodes += size
        self.images = self._drawn()  # everything drawn so far, in or before this step
        result.train_episodes = self.episodes
        if self.images:
            result.train_episodes += int(self.images // self.episode_images)
        self.losses.append(loss)
        for name, value in numeric_metrics(metrics).items():
            self.step_metrics.setdefault(name, []).append(value)

    def _validate(self) -> None:
        self.tracker.where = f"validation after step {self.result.steps}"
        start = time.perf_counter()
        with self.profiler.phase(VALIDATION):
            batch = self.context.validation_batch(self.cell)
            scores = evaluate_batch(self.algorithm, batch, self.cell.spec,
                                    env=self.context.environment(self.cell))
        self.validation_seconds += time.perf_counter() - start
        self._record_point(scores)

    def _record_point(self, scores: dict[str, np.ndarray]) -> None:
        result = self.result
        metric = metric_for(self.cell.spec.task_type)
        value, loss = float(np.mean(scores[metric.name])), float(np.mean(scores["loss"]))
        if not math.isfinite(loss):
            raise CellFailed(f"validation loss is {loss} after step {result.steps}")
        result.curve.append({
            "step": result.steps, "episodes": result.train_episodes,
            "seconds": round(self.seconds, 4),
            "train_loss": float(np.mean(self.losses)) if self.losses else None,
            **{f"train_{name}": float(np.mean(values)) for name, values in self.step_metrics.items()},
            f"val_{metric.name}": value, "val_loss": loss,
        })
        self.losses, self.step_metrics = [], {}
        score = metric.score(value)
        if self.best is None or score > self.best[0]:
            keep = self.context.plan.config.checkpoint == "best"
            state = copy.deepcopy(self.algorithm.state_dict()) if keep else {}
            self.best = (score, state, result.steps)
        if self.on_point is not None:
            self.on_point(len(result.curve) - 1, value)

    def _drawn(self) -> int:
        return self.train_batches.drawn if self.train_batches is not None else 0

    def extra_profile(self) -> dict[str, Any]:
        """Profile entries beyond :class:`metabench.profiling.Profile`.

        ``episodes_per_step`` is the mean charge of a step for an algorithm that draws
        training batches (images drawn / images per episode / steps), which also gets
        ``train_images``: the images drawn.
        """
        profile: dict[str, Any] = {
            "budget_seconds": round(self.seconds, 4),
            "validation_time_s": round(self.validation_seconds, 4),
            "episodes_per_step": self.batch_size,
        }
        if self.images or not self.uses_episodes:
            steps = max(1, self.result.steps)
            profile["episodes_per_step"] = round(
                (self.episodes + self.images / self.episode_images) / steps, 4)
            profile["train_images"] = self.images
        return profile


def _no_episodes() -> EpisodeBatch:
    """The batch an algorithm that trains on mini-batches is handed: no episodes."""
    empty = torch.empty(0)
    return EpisodeBatch(empty, empty.long(), empty.clone(), empty.long(), [], [])


def _episodes_per_step(algorithm: Algorithm) -> int:
    try:
        return episodes_per_step(algorithm)
    except ValueError as error:
        raise CellFailed(f"algorithm {error}") from None


def _uses_episodes(algorithm: Algorithm) -> bool:
    try:
        return uses_episodes(algorithm)
    except ValueError as error:
        raise CellFailed(f"algorithm {error}") from None


def _loss_of(metrics: Any, step: int) -> float:
    if not isinstance(metrics, Mapping) or "loss" not in metrics:
        raise CellFailed(f"meta_train_step returned {type(metrics).__name__} without 'loss' "
                         f"at step {step}")
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise CellFailed(f"training loss is {loss} at step {step}")
    return loss


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among a step's metrics other than the loss (kept on its own)."""
    numbers = {}
    for name, value in metrics.items():
        if name == "loss" or isinstance(value, bool):
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)) and math.isfinite(value):
            numbers[str(name)] = float(value)
    return numbers

"""run_cell: meta-train one algorithm under the budget, keep its best-on-validation weights,
and test it on the fixed test episodes of its cell group.

Everything random in a cell is seeded from the cell's identity, never from global state, so
a cell gives the same numbers whether it runs first, last, alone or after a resume (CPU).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from metabench import registry
from metabench.algorithm import Algorithm, AlgorithmSetup, episodes_per_step, uses_episodes
from metabench.batches import TrainBatches
from metabench.cell import Cell
from metabench.clock import now
from metabench.config import Budget, Config
from metabench.data.base import ClassificationDataset
from metabench.episodes import Dataset, EpisodeSampler
from metabench.evaluation import (
    CellFailed,
    episode_rows,
    evaluate_batch,
    evaluation_chunks,
)
from metabench.hparams import as_dict
from metabench.metrics import metric_for
from metabench.multisource import make_sampler
from metabench.plan import Plan, setting_qualifiers
from metabench.profiling import PhaseProfiler
from metabench.protocol import CLASSIFICATION, EpisodeBatch, TaskSpec
from metabench.records import CellResult, EpisodeRow
from metabench.seeding import derive_seed, seed_everything
from metabench.variable_episodes import copy_batch, mean_episode_images

TRAIN, VALIDATION, TEST = "train", "validation", "test"
CPU_OOM_MESSAGE = "can't allocate memory"  # PyTorch's CPU allocator failing


#: ``on_point(point, value)``: called after each validation point with the cell's validation
#: metric (0-based point index); it may raise :class:`Pruned` to stop the training there.
PointObserver = Callable[[int, float], None]


class Pruned(Exception):
    """Raised by a :data:`PointObserver` to stop a cell's training early (a pruned tuning
    trial); the cell ends with status ``pruned`` and this message as its reason."""


class ProgressSink(Protocol):
    """Where a running cell reports progress (a terminal bar, a logger, nothing)."""

    def phase(self, cell: Cell, name: str, total: float, unit: str) -> None:
        """A phase of ``cell`` starts: ``total`` units (episodes or seconds) to go."""

    def update(self, completed: float) -> None:
        """``completed`` units of the current phase are done."""


class NullProgress:
    """Reports nothing."""

    def phase(self, cell: Cell, name: str, total: float, unit: str) -> None:
        pass

    def update(self, completed: float) -> None:
        pass


@dataclass
class RunContext:
    """What every cell of a run shares: the plan, the device, the built data sets.

    ``test_datasets`` maps a cell's ``domains`` (``glyphs->omniglot``) to the data set its
    cells are tested on when that is another one (the cross-domain protocol), built to the
    training input shape. ``trained`` keeps the trained state of each algorithm of the
    current training group, so the cells of a multi-source data set (one per test source)
    train once (:attr:`metabench.cell.Cell.train_group`).
    """

    plan: Plan
    device: torch.device
    datasets: Mapping[str, Dataset]
    progress: ProgressSink = field(default_factory=NullProgress)
    test_datasets: Mapping[str, Dataset] = field(default_factory=dict)
    _validation: dict[tuple, EpisodeBatch] = field(default_factory=dict)
    trained: dict[tuple[str, str], _Trained] = field(default_factory=dict)

    def validation_batch(self, cell: Cell) -> EpisodeBatch:
        """The cell group's validation episodes, built once and shared by its algorithms.

        Each call returns fresh copies, so an algorithm that changes its inputs in place
        cannot change what the next algorithm sees.
        """
        key = (cell.dataset, cell.spec, cell.seed)
        if key not in self._validation:
            self._validation.clear()  # keep one group: memory stays bounded
            sampler = self.sampler(cell, VALIDATION, cell.spec)
            self._validation[key] = sampler.batch(range(self.plan.config.val_episodes))
        return copy_batch(self._validation[key])

    def sampler(self, cell: Cell, split: str, spec: TaskSpec) -> EpisodeSampler:
        """The episode sampler of one split of the cell's data set (for ``test``, the data
        set the cell is tested on); variable or multi-source where the cell's are."""
        dataset = self.datasets[cell.dataset]
        if split == TEST:
            dataset = self.test_datasets.get(cell.domains, dataset)
        return make_sampler(dataset, split, spec, cell.seed, self.device)

    def environment(self, cell: Cell) -> Any:
        """The environment of an rl cell's task family (None for other task types)."""
        return getattr(self.datasets[cell.dataset], "env", None)

    def train_batches(self, cell: Cell) -> TrainBatches | None:
        """The cell's training mini-batches (``AlgorithmSetup.train_batches``); None for
        regression. Built lazily: nothing is read until an algorithm draws."""
        dataset = self.datasets[cell.dataset]
        if not isinstance(dataset, ClassificationDataset):
            return None
        return TrainBatches(dataset, cell.seed, self.device)


def run_cell(cell: Cell, context: RunContext, *, test: bool = True,
             on_point: PointObserver | None = None) -> CellResult:
    """Run one cell; an algorithm's error or NaN ends it as ``failed``, never the run.

    ``test=False`` trains and validates only (a tuning trial: no test episode is built);
    ``on_point`` sees each validation point and may stop the training (:class:`Pruned`).
    """
    result = CellResult(cell=cell, budget=context.plan.budget_for(cell).label, device=str(context.device),
                        started=now(), hparams=as_dict(context.plan.hparams_for(cell)))
    skip = context.plan.skip_reason(cell)
    if skip:
        result.status, result.reason = "skipped", skip
    else:
        _run_guarded(cell, context, result, test, on_point)
    result.finished = now()
    return result


def failed_cell(cell: Cell, config: Config, reason: str, hparams: Any = None) -> CellResult:
    """The result of a cell that could not run where it was sent (its worker died, or a
    plugin or data set is missing there)."""
    stamp = now()
    budget = config.budget_for(setting_qualifiers(cell.spec))
    return CellResult(cell=cell, status="failed", reason=reason,
                      budget=budget.label, started=stamp, finished=stamp,
                      hparams=as_dict(hparams))


def _run_guarded(cell: Cell, context: RunContext, result: CellResult, test: bool,
                 on_point: PointObserver | None) -> None:
    tracker = _Where()
    try:
        _execute(cell, context, result, tracker, test, on_point)
    except Pruned as stop:
        result.status, result.reason, result.episodes = "pruned", str(stop), []
    except CellFailed as error:
        _fail(result, str(error))
    except Exception as error:  # the algorithm's own errors, OOM included
        kind = type(error).__name__
        if is_out_of_memory(error):
            kind = f"out of memory ({kind})"
        _fail(result, f"{kind} in {tracker.where}: {_first_line(error)}")
    finally:
        if context.device.type == "cuda":
            torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA out-of-memory errors, MemoryError and PyTorch's CPU allocator failing."""
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or CPU_OOM_MESSAGE in str(error)


@dataclass
class _Where:
    where: str = "setup"


def _fail(result: CellResult, reason: str) -> None:
    result.status, result.reason, result.episodes = "failed", reason, []


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else "(no message)"
    return line if len(line) <= 300 else line[:297] + "..."


@dataclass
class _Trained:
    """An algorithm's trained state and training record, reused by the other cells of its
    training group (a multi-source data set tested on each source)."""

    cell: str
    state: dict[str, Any]
    fields: dict[str, Any]
    profile: dict[str, Any]
    train_spec: TaskSpec | None


_TRAINING_FIELDS = ("steps", "train_episodes", "best_step", "curve")


def _execute(cell: Cell, context: RunContext, result: CellResult, tracker: _Where, test: bool,
             on_point: PointObserver | None) -> None:
    torch.set_grad_enabled(True)
    batches = context.train_batches(cell)
    algorithm = build_algorithm(cell, context, batches)
    profiler = PhaseProfiler(context.device)
    shared = cell.train_group != cell.group  # a multi-source cell: one training per group
    done = context.trained.get((cell.algorithm, cell.train_group)) if shared and test else None
    if done is None:
        seed_everything(derive_seed("train", cell.algorithm, cell.train_group)
                        if shared else derive_seed("train", cell.key))
        trainer = _Trainer(cell, context, algorithm, profiler, result, tracker, batches)
        trainer.on_point = on_point
        trainer.train()
        train_spec, extra = trainer.train_spec, trainer.extra_profile()
        if shared:
            _keep_training(context, cell, algorithm, result, profiler, trainer)
    else:
        train_spec, extra = _reuse_training(done, algorithm, result)
    shapes: list[tuple[int, int]] = []
    if test:
        tracker.where = "test"
        result.episodes = _test(cell, context, algorithm, profiler, shapes)
    profile = profiler.profile(TRAIN, TEST).as_dict()
    if done is not None:  # the training phase's figures are those of the cell that trained
        profile.update({k: v for k, v in done.profile.items() if k in profile})
    result.profile = {**profile, **extra}
    if cell.spec.variable and shapes:  # what the report's way/shot histogram shows
        result.profile["test_ways"] = [ways for ways, _ in shapes]
        result.profile["test_support"] = [support for _, support in shapes]
    result.protocol = protocol_details(cell, context.plan.config, algorithm, train_spec)
    result.protocol["hparams"] = context.plan.hparams_source(cell)


def _reuse_training(done: _Trained, algorithm: Algorithm, result: CellResult
                    ) -> tuple[TaskSpec | None, dict[str, Any]]:
    """Load a training group's trained state into ``algorithm`` and its record into
    ``result``; the train spec and the profile entries of that training."""
    algorithm.load_state_dict(copy.deepcopy(done.state))
    for name, value in done.fields.items():
        setattr(result, name, copy.deepcopy(value))
    return done.train_spec, {**done.profile, "trained_in": done.cell}


def _keep_training(context: RunContext, cell: Cell, algorithm: Algorithm, result: CellResult,
                   profiler: PhaseProfiler, trainer: _Trainer) -> None:
    """Keep ``algorithm``'s trained state for the other cells of its training group (only
    the current group's: memory stays bounded)."""
    key = (cell.algorithm, cell.train_group)
    for stale in [k for k in context.trained if k[1] != key[1]]:
        del context.trained[stale]
    train_profile = {k: v for k, v in profiler.profile(TRAIN).as_dict().items()
                     if "train" in k}
    context.trained[key] = _Trained(
        cell.key, copy.deepcopy(algorithm.state_dict()),
        {name: copy.deepcopy(getattr(result, name)) for name in _TRAINING_FIELDS},
        {**train_profile, **trainer.extra_profile()}, trainer.train_spec)


def protocol_details(cell: Cell, config: Config, algorithm: Algorithm,
                     train_spec: TaskSpec | None) -> dict[str, Any]:
    """The protocol facts of a cell that its identity does not show: which weights were
    tested, how it trained when not on the test spec, and what the algorithm reports
    (``protocol_details()``, e.g. its test-time batch-norm statistics)."""
    details: dict[str, Any] = {
        "checkpoint": "best on validation" if config.checkpoint == "best" else "last",
        # torch's CPU results depend on it: the same on every backend (--threads)
        "torch_threads": torch.get_num_threads()}
    if train_spec is None:
        details["train"] = "mini-batches of the training classes"
    elif train_spec != cell.spec:
        details["train"] = f"{train_spec.label} q{train_spec.queries}"
    if cell.spec.variable and config.sampler_options:  # the sampler's non-default options
        details["sampler"] = ", ".join(f"{k}={v}" for k, v in sorted(config.sampler_options.items()))
    report = getattr(algorithm, "protocol_details", None)
    if callable(report):
        reported = report()
        if not isinstance(reported, Mapping):
            raise CellFailed(f"protocol_details() returned {type(reported).__name__}; "
                             "expected a dict of short values")
        details.update({str(k): v for k, v in reported.items()})
    return details


def build_algorithm(cell: Cell, context: RunContext,
                    train_batches: TrainBatches | None = None) -> Algorithm:
    """The cell's algorithm on a backbone whose initial weights are the same for every
    algorithm of the cell group (seeded from the group, not the algorithm).

    ``train_batches`` defaults to a fresh :meth:`RunContext.train_batches` of the cell.
    """
    dataset = context.datasets[cell.dataset]
    input_shape = tuple(dataset.input_shape)
    if train_batches is None:
        train_batches = context.train_batches(cell)
    seed_everything(derive_seed("init", cell.train_group))
    backbone = registry.get("backbone", cell.backbone).factory(input_shape).to(context.device)
    setup = AlgorithmSetup(backbone, cell.spec, context.device, cell.seed, input_shape,
                           train_batches, context.environment(cell))
    entry = registry.get("algorithm", context.plan.entry_of(cell.algorithm))
    return entry.factory(setup, context.plan.hparams_for(cell))


class _Trainer:
    """Meta-training under the budget, with validation at evenly spaced points.

    The budget counts episodes sampled for the algorithm plus the images it draws from
    its ``train_batches``, ``ways * (shots + queries)`` images of the cell's spec to an
    episode; ``result.train_episodes`` is that total rounded down to whole episodes.
    """

    def __init__(self, cell: Cell, context: RunContext, algorithm: Algorithm,
                 profiler: PhaseProfiler, result: CellResult, tracker: _Where,
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
        self.sampler: EpisodeSampler | None = None
        self.uses_episodes = _uses_episodes(algorithm)
        self.train_spec: TaskSpec | None = None  # None: trains on mini-batches
        if self.uses_episodes:
            self.batch_size = _episodes_per_step(algorithm)
            self.train_spec = getattr(algorithm, "train_task_spec", lambda s: s)(cell.spec)
            self.sampler = context.sampler(cell, TRAIN, self.train_spec)
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


def _test(cell: Cell, context: RunContext, algorithm: Algorithm, profiler: PhaseProfiler,
          shapes: list[tuple[int, int]] | None = None) -> list[EpisodeRow]:
    """Score the test episodes; ``shapes`` collects each one's (ways, support size)."""
    spec, total = cell.spec, context.plan.config.episodes
    sampler = context.sampler(cell, TEST, spec)
    context.progress.phase(cell, TEST, total, "episodes")
    chunks: list[dict[str, np.ndarray]] = []
    with profiler.phase(TEST):
        for start, batch in evaluation_chunks(sampler, total):
            chunks.append(evaluate_batch(algorithm, batch, spec, profiler.step,
                                         context.environment(cell),
                                         context.plan.config.curve_steps))
            if shapes is not None and spec.variable:
                shapes.extend((len(e.classes), len(e.support_y)) for e in batch)
            context.progress.update(start + len(batch))
    return episode_rows({key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]})

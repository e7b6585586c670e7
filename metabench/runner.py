"""run_cell: meta-train one algorithm under the budget, keep its best-on-validation weights,
and test it on the fixed test episodes of its cell group.

Everything random in a cell is seeded from the cell's identity, never from global state, so
a cell gives the same numbers whether it runs first, last, alone or after a resume (CPU).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from metabench import registry
from metabench.algorithm import Algorithm, AlgorithmSetup
from metabench.allocator import keep_freed_memory, release_freed_memory
from metabench.batches import TrainBatches
from metabench.cell import Cell
from metabench.clock import now
from metabench.config import Config
from metabench.data.base import ClassificationDataset
from metabench.episodes import Dataset, EpisodeSampler
from metabench.evaluation import (
    CellFailed,
    episode_rows,
    evaluate_batch,
    evaluation_chunks,
)
from metabench.hparams import as_dict
from metabench.multisource import make_sampler
from metabench.plan import Plan, setting_qualifiers
from metabench.profiling import PhaseProfiler
from metabench.protocol import EpisodeBatch, TaskSpec
from metabench.records import CellResult, EpisodeRow
from metabench.seeding import derive_seed, seed_everything
from metabench.trainer import (
    TRAIN,
    VALIDATION,
    PointObserver,
    Trainer,
    Where,
    numeric_metrics,
)
from metabench.variable_episodes import copy_batch

__all__ = ["TEST", "TRAIN", "VALIDATION", "NullProgress", "PointObserver", "ProgressSink", "Pruned",
           "RunContext", "build_algorithm", "failed_cell", "is_out_of_memory", "numeric_metrics",
           "protocol_details", "run_cell"]

TEST = "test"
CPU_OOM_MESSAGE = "can't allocate memory"  # PyTorch's CPU allocator failing


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

    def __post_init__(self) -> None:
        keep_freed_memory()  # training reuses its freed activations (metabench.allocator)

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
    tracker = Where()
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


def _execute(cell: Cell, context: RunContext, result: CellResult, tracker: Where, test: bool,
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
        trainer = Trainer(cell, context, algorithm, profiler, result, tracker, batches)
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
                   profiler: PhaseProfiler, trainer: Trainer) -> None:
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


def _test(cell: Cell, context: RunContext, algorithm: Algorithm, profiler: PhaseProfiler,
          shapes: list[tuple[int, int]] | None = None) -> list[EpisodeRow]:
    """Score the test episodes; ``shapes`` collects each one's (ways, support size)."""
    spec, total = cell.spec, context.plan.config.episodes
    sampler = context.sampler(cell, TEST, spec)
    context.progress.phase(cell, TEST, total, "episodes")
    chunks: list[dict[str, np.ndarray]] = []
    release_freed_memory()  # the test phase's peak memory is its own, not training's
    with profiler.phase(TEST):
        for start, batch in evaluation_chunks(sampler, total):
            chunks.append(evaluate_batch(algorithm, batch, spec, profiler.step,
                                         context.environment(cell),
                                         context.plan.config.curve_steps))
            if shapes is not None and spec.variable:
                shapes.extend((len(e.classes), len(e.support_y)) for e in batch)
            context.progress.update(start + len(batch))
    return episode_rows({key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]})

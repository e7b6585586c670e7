"""The trials of a tuning: its studies (one per algorithm and setting), the hyperparameters
Optuna's TPE sampler proposes, median pruning, and the runner that trains and validates a
trial without ever building a test episode.

Trial ``n`` of a study is a pure function of the tuning's seed and the study's trials
``0..n-1``: the sampler is seeded from (seed, study, n) and sees exactly those trials. So a
tuning gives the same trials whether it runs in one go, is resumed after an interruption, or
runs its studies side by side on Ray.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metabench import registry
from metabench.budget import Budget
from metabench.cell import Cell
from metabench.config import SEED_RANGE, Config, check_number
from metabench.errors import MetabenchError
from metabench.hparams import as_dict
from metabench.metrics import metric_for
from metabench.plan import Plan, hparam_tables, study_setting
from metabench.protocol import TaskSpec
from metabench.records import CellResult, TrialRow, cell_identity
from metabench.runner import Pruned, RunContext, run_cell
from metabench.search_space import (
    Distribution,
    check_space,
    contains,
    describe_space,
    parse_distribution,
    to_optuna,
)
from metabench.seeding import derive_seed

DEFAULT_TRIALS = 16
# The default trial budget: this share of the comparison's budget.
TRIAL_SHARE = 1 / 3
TRIAL_MARK = "~"  # a trial's label in its cells: fomaml~3
# Median pruning: no pruning until this many trials of the study finished, and never at the
# last validation point (stopping there saves nothing).
PRUNE_AFTER_TRIALS = 4


@dataclass(frozen=True)
class TuneSettings:
    """A tuning's own options: trials per study, each trial's training budget (default: a
    third of the comparison's), the sampler's seed, median pruning, and search-space
    changes (``{algorithm: {name: "log:0.01:1" | "off"}}``)."""

    trials: int = DEFAULT_TRIALS
    trial_budget: str | None = None
    seed: int = 0
    prune: bool = True
    space: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise MetabenchError(f"trials={self.trials} is too small; expected >= 1")
        if self.trial_budget is not None:
            Budget.parse(self.trial_budget)

    def budget_for(self, config: Config) -> Budget:
        """The budget of one trial: ``trial_budget``, or a third of the comparison's."""
        if self.trial_budget:
            return Budget.parse(self.trial_budget)
        return config.budget.scaled(TRIAL_SHARE)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (search-space changes as text)."""
        data = dataclasses.asdict(self)
        data["space"] = {owner: {name: _space_text(value) for name, value in table.items()}
                         for owner, table in self.space.items()}
        return data


def _space_text(value: Any) -> Any:
    describe = getattr(value, "describe", None)
    return value if describe is None else describe().replace(" ", ":").replace("..", ":")


def make_settings(options: Mapping[str, Any], base: TuneSettings | None = None) -> TuneSettings:
    """``base`` (or the defaults) with ``options`` applied (None values ignored); ``space``
    takes ``ALGO.NAME=RANGE`` strings or a ``{ALGO: {NAME: RANGE}}`` table."""
    values = dataclasses.asdict(base) if base else {}
    for raw_key, value in options.items():
        key = raw_key.replace("-", "_")
        if value is None:
            continue
        if key == "space":
            values["space"] = _merge_space(values.get("space") or {}, value)
        elif key in ("trials", "seed"):
            values[key] = _integer(key, value)
        elif key == "prune":
            if not isinstance(value, bool):
                raise MetabenchError(f"prune={value!r} is not true or false")
            values[key] = value
        elif key == "trial_budget":
            values[key] = str(value)
        else:
            raise MetabenchError(f"unknown tune option '{raw_key}'; known: prune, seed, space, "
                                 "trial_budget, trials")
    return TuneSettings(**values)


def _integer(key: str, value: Any) -> int:
    """A whole number within what the store holds (no floats, no NaN)."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MetabenchError(f"{key}={value!r} is not an integer")
    low, high = (1, 10**6) if key == "trials" else SEED_RANGE
    check_number(key, value, low, high)
    return value


def _merge_space(previous: Mapping[str, Mapping[str, Any]], value: Any) -> dict[str, dict[str, Any]]:
    merged = {owner: dict(table) for owner, table in previous.items()}
    if isinstance(value, Mapping):
        for owner, table in value.items():
            if not isinstance(table, Mapping):
                raise MetabenchError(f"space.{owner} must be a table of NAME = RANGE "
                                     f"(e.g. [tune.space.{owner}])")
            merged.setdefault(str(owner), {}).update({str(k): v for k, v in table.items()})
        return merged
    for pair in [value] if isinstance(value, str) else list(value):
        target, sep, text = str(pair).partition("=")
        owner, dot, name = target.partition(".")
        if not sep or not dot or not owner.strip() or not name.strip():
            raise MetabenchError(f"--space '{pair}' is not of the form ALGORITHM.NAME=RANGE "
                                 "(e.g. fomaml.inner_lr=log:0.01:1)")
        merged.setdefault(owner.strip(), {})[name.strip()] = text.strip()
    return merged


@dataclass(frozen=True)
class Study:
    """What one study tunes: an algorithm (label) on one data set and spec, the space, and
    the hyperparameters a trial starts from (defaults plus what is set by hand)."""

    label: str
    entry: str  # the registered algorithm (a variant's label differs)
    dataset: str
    spec: TaskSpec
    space: Mapping[str, Distribution]
    base: Any

    @property
    def name(self) -> str:
        """``fomaml glyphs 5w1s``."""
        return f"{self.label} {self.setting}"

    @property
    def setting(self) -> str:
        """``glyphs 5w1s``."""
        return study_setting(self.dataset, self.spec)

    def trial_label(self, number: int) -> str:
        """The algorithm label of trial ``number``'s cells: ``fomaml~3``."""
        return f"{self.label}{TRIAL_MARK}{number}"

    def full_params(self, params: Mapping[str, Any]) -> Any:
        """The trial's hyperparameters: the study's base with ``params`` applied."""
        return dataclasses.replace(self.base, **params)


def plan_studies(plan: Plan, settings: TuneSettings) -> tuple[list[Study], list[str]]:
    """One study per algorithm x data set x spec of the plan, and the reasons of the
    combinations that cannot run (an algorithm that does not support the task type)."""
    _check_space_targets(plan, settings)
    studies: dict[str, Study] = {}
    skipped: list[str] = []
    for cell in plan.cells:
        reason = plan.skip_reason(cell)
        if reason:
            skipped.append(reason)
            continue
        space = study_space(plan, cell, settings)
        study = Study(cell.algorithm, plan.entry_of(cell.algorithm), cell.dataset, cell.spec,
                      space, plan.hparams_for(cell))
        studies.setdefault(study.name, study)
    if not studies:
        raise MetabenchError("nothing to tune: " + ("; ".join(dict.fromkeys(skipped)) or
                                                   "the plan has no cells"))
    return list(studies.values()), list(dict.fromkeys(skipped))


def study_space(plan: Plan, cell: Cell, settings: TuneSettings) -> dict[str, Distribution]:
    """The algorithm's registered space with the user's changes, less what is set by hand
    (a value given with ``--set`` stays fixed), checked against its hyperparameters."""
    label, entry = cell.algorithm, registry.get("algorithm", plan.entry_of(cell.algorithm))
    owner = f"{entry.plugin} ({label})" if label == entry.name else f"{label} (={entry.name})"
    registered = entry.options.get("search_space") or {}
    changes = {name: parse_distribution(f"--space {label}.{name}", text)
               for name, text in settings.space.get(label, {}).items()}
    kept = {name: dist for name, dist in dict(registered).items() if name not in changes} \
        if isinstance(registered, Mapping) else registered
    chosen = check_space(owner, kept, entry.defaults)
    chosen.update(check_space(label, {k: v for k, v in changes.items() if v is not None},
                              entry.defaults))
    hand = {name for key in hparam_tables(label, cell.spec)
            for name in plan.config.hparams.get(key, {})}
    chosen = {name: dist for name, dist in chosen.items() if name not in hand}
    if not chosen:
        why = "its plugin declares no search space" if not registered else \
            "every entry of its space is set by hand or off"
        raise MetabenchError(f"nothing to tune for {label}: {why}; give one with "
                             f"--space {label}.NAME=RANGE (e.g. log:0.01:1)")
    return chosen


def _check_space_targets(plan: Plan, settings: TuneSettings) -> None:
    algorithms = sorted({cell.algorithm for cell in plan.cells})
    for owner in settings.space:
        if owner not in algorithms:
            raise MetabenchError(f"--space names algorithm '{owner}', which is not tuned here "
                                 f"(algorithms: {', '.join(algorithms)})")


def describe_study(study: Study) -> str:
    """``fomaml glyphs 5w1s: inner_lr log 0.01..1, meta_lr log 0.0001..0.01``."""
    return f"{study.name}: {describe_space(study.space)}"


# --- sampling -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialSummary:
    """A finished trial of a study (its seeds combined): what the sampler and pruner see.

    ``score`` is the mean validation value signed so that higher is better; ``points`` the
    mean validation value at each validation point (in the metric's own unit).
    """

    number: int
    params: Mapping[str, Any]
    status: str
    score: float | None
    points: Mapping[int, float]


def propose(study: Study, number: int, history: Sequence[TrialSummary],
            settings: TuneSettings) -> dict[str, Any]:
    """Trial ``number``'s hyperparameters: Optuna's TPE sampler, seeded from the tuning's
    seed, the study and the number, after the study's earlier trials. Trial 0 runs the
    starting values (defaults and what is set by hand) wherever they lie in the space."""
    optuna = _optuna()
    distributions = {name: to_optuna(dist) for name, dist in study.space.items()}
    startup = max(1, min(10, settings.trials // 3))
    seed = derive_seed("tune", settings.seed, study.name, number) % 2**32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate TPE is marked experimental
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                             multivariate=True)
        optuna_study = optuna.create_study(direction="maximize", sampler=sampler)
        for past in history:
            optuna_study.add_trial(_frozen(optuna, past, distributions))
        if number == 0:
            start = as_dict(study.base)
            fixed = {name: start[name] for name, dist in study.space.items()
                     if contains(dist, start.get(name))}
            if fixed:
                optuna_study.enqueue_trial(fixed)
        trial = optuna_study.ask(distributions)
    return dict(trial.params)


def _frozen(optuna: Any, past: TrialSummary, distributions: Mapping[str, Any]) -> Any:
    state = {"complete": optuna.trial.TrialState.COMPLETE,
             "pruned": optuna.trial.TrialState.PRUNED}.get(past.status, optuna.trial.TrialState.FAIL)
    score = past.score if state == optuna.trial.TrialState.COMPLETE else None
    points = {step: value for step, value in past.points.items() if math.isfinite(value)}
    return optuna.trial.create_trial(params=dict(past.params), distributions=dict(distributions),
                                     value=score, state=state, intermediate_values=points)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MetabenchError("metabench tune needs Optuna, which is not installed; "
                             "pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --- running --------------------------------------------------------------------------------

def trial_config(config: Config, proposals: Mapping[str, tuple[Study, Any]], budget: Budget) -> Config:
    """The comparison that runs a wave of trials: each trial an algorithm variant labelled
    ``ALGO~N`` with its full hyperparameters, trained on the trial budget, never tested."""
    algorithms = tuple(proposals)
    variants = {label: study.entry for label, (study, _) in proposals.items()}
    hparams = {label: _changed(study, params) for label, (study, params) in proposals.items()}
    datasets = tuple(dict.fromkeys(study.dataset for study, _ in proposals.values()))
    ways = tuple(dict.fromkeys(study.spec.ways for study, _ in proposals.values()))
    shots = tuple(dict.fromkeys(study.spec.shots for study, _ in proposals.values()))
    return dataclasses.replace(config, algorithms=algorithms, variants=variants, hparams=hparams,
                               datasets=datasets, ways=ways, shots=shots, budget=budget,
                               test_dataset=None, tuned=None, tuning={}, preset=None)


def _changed(study: Study, params: Any) -> dict[str, Any]:
    """The trial's hyperparameters that differ from the registered defaults (as set on top
    of them by the trial's variant table)."""
    full = as_dict(study.full_params(params))
    defaults = as_dict(registry.get("algorithm", study.entry).defaults)
    return {name: value for name, value in full.items() if defaults.get(name) != value}


def trial_of(cell: Cell) -> tuple[str, int]:
    """The algorithm label and trial number of a trial's cell (``fomaml~3`` -> fomaml, 3)."""
    label, _, number = cell.algorithm.rpartition(TRIAL_MARK)
    return label, int(number)


@dataclass
class TrialRunner:
    """Runs one trial's cell where it is sent: training and validation only, stopped when
    median pruning says so. Holds, per study, the validation curves of its finished trials
    (pickled to Ray workers with the job)."""

    history: Mapping[str, Sequence[TrialSummary]]
    prune: bool = True

    def __call__(self, cell: Cell, context: RunContext) -> CellResult:
        label, _ = trial_of(cell)
        name = f"{label} {study_setting(cell.dataset, cell.spec)}"
        points = context.plan.config.val_points
        higher = metric_for(cell.spec.task_type).higher_is_better
        observer = None
        if self.prune:
            observer = MedianPruning(self.history.get(name, ()), points, higher)
        return run_cell(cell, context, test=False, on_point=observer)


@dataclass
class MedianPruning:
    """Optuna's median rule on the stored validation curves: stop a trial at a validation
    point where its best value so far is worse than the median of the study's finished
    trials at that point (after :data:`PRUNE_AFTER_TRIALS` trials; never at the last point)."""

    history: Sequence[TrialSummary]
    points: int
    higher_is_better: bool
    seen: list[float] = field(default_factory=list)

    def __call__(self, point: int, value: float) -> None:
        self.seen.append(value)
        finished = [past for past in self.history if past.status == "complete"]
        if point >= self.points - 1 or len(finished) < PRUNE_AFTER_TRIALS:
            return
        optuna = _optuna()
        study = optuna.create_study(direction="maximize" if self.higher_is_better else "minimize",
                                    pruner=optuna.pruners.MedianPruner(
                                        n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=0))
        for past in self.history:
            values = {step: v for step, v in past.points.items() if math.isfinite(v)}
            if values and past.status in ("complete", "pruned"):
                complete = past.status == "complete"
                study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState.COMPLETE if complete
                    else optuna.trial.TrialState.PRUNED,
                    value=values[max(values)] if complete else None, intermediate_values=values))
        trial = study.ask()
        for step, seen in enumerate(self.seen):
            trial.report(seen, step)
        if trial.should_prune():
            raise Pruned(f"pruned at validation point {point + 1} of {self.points}: below the "
                         f"median of {len(finished)} finished trials there")


def trial_row(result: CellResult, study: str, number: int, params: Mapping[str, Any],
              checkpoint: str) -> TrialRow:
    """A finished trial cell as its row of the trials table."""
    metric = metric_for(result.cell.spec.task_type)
    values = [point[f"val_{metric.name}"] for point in result.curve]
    value = None
    if values and result.status in ("ok", "pruned"):
        value = values[-1] if checkpoint == "last" else max(values, key=metric.score)
    status = {"ok": "complete", "pruned": "pruned"}.get(result.status, "failed")
    identity = dataclasses.asdict(cell_identity(result.cell))
    identity["algorithm"] = trial_of(result.cell)[0]
    return TrialRow(**identity, study=study, number=number, params=dict(params), status=status,
                    reason=result.reason, value=value, metric=metric.name, budget=result.budget,
                    steps=result.steps, train_episodes=result.train_episodes,
                    seconds=result.profile.get("budget_seconds"), curve=result.curve,
                    started=result.started, finished=result.finished)

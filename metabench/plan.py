"""The comparison plan: a :class:`metabench.config.Config` resolved and expanded into cells.

A cell is one algorithm x data set x TaskSpec x seed. Cells are ordered so that all
algorithms of one (data set, spec, seed) group run one after the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metabench import registry
from metabench.budget import Budget
from metabench.cell import Cell
from metabench.config import Config
from metabench.errors import MetabenchError
from metabench.hparams import apply_overrides
from metabench.protocol import CLASSIFICATION, REGRESSION, RL, AnyShot, TaskSpec
from metabench.sources import is_multi_source, registered_name, source_names

DEFAULT_BACKBONES = {CLASSIFICATION: "conv4", REGRESSION: "mlp", RL: "policy-mlp"}


@dataclass(frozen=True)
class Plan:
    """The resolved comparison: the cells, the budget and each algorithm's hyperparameters.

    ``hparams`` holds each algorithm's (or variant's) hyperparameters for every setting of
    the plan, keyed by ``(algorithm, data set, spec label)``; ``entries`` maps an algorithm of the
    plan to the registered algorithm that builds it (a variant to its algorithm).
    """

    config: Config
    budget: Budget
    cells: tuple[Cell, ...]
    hparams: Mapping[tuple[str, str, str], Any]
    task_types: Mapping[str, str]
    supported: Mapping[str, frozenset[str]]
    entries: Mapping[str, str] = field(default_factory=dict)
    variable_ways: Mapping[str, bool] = field(default_factory=dict)

    def hparams_for(self, cell: Cell) -> Any:
        """The hyperparameters the cell's algorithm runs with."""
        return self.hparams[(cell.algorithm, cell.dataset, cell.spec.label)]

    def hparams_source(self, cell: Cell) -> str:
        """Where the cell's hyperparameters come from: ``defaults``, ``tuned (16 trials x
        time:5s, tuning ID)``, ``set by hand: inner_lr`` (``preset NAME: ...`` for a paper
        preset's values), or tuned and set by hand."""
        config, parts = self.config, []
        if tuned_values(config, cell.algorithm, cell.dataset, cell.spec):
            tuning = config.tuning
            parts.append(f"tuned ({tuning.get('trials')} trials x {tuning.get('trial_budget')}, "
                         f"tuning {tuning.get('id')})")
        hand = sorted({name for key in hparam_tables(cell.algorithm, cell.spec)
                       for name in config.hparams.get(key, {})})
        if hand:
            who = f"preset {config.preset}" if config.preset else "set by hand"
            parts.append(f"{who}: {', '.join(hand)}")
        return "; ".join(parts) or "defaults"

    def budget_for(self, cell: Cell) -> Budget:
        """The cell's meta-training budget: ``budget``, or its setting's in ``budgets``."""
        return self.config.budget_for(setting_qualifiers(cell.spec))

    def entry_of(self, algorithm: str) -> str:
        """The registered algorithm that builds ``algorithm`` (itself, or a variant's)."""
        return self.entries.get(algorithm, algorithm)

    def skip_reason(self, cell: Cell) -> str:
        """Why a cell cannot run (empty when it can)."""
        task_type = self.task_types[cell.dataset]
        supported = self.supported[cell.algorithm]
        if supported and task_type not in supported:
            return (
                f"{cell.algorithm} supports {', '.join(sorted(supported))} tasks, "
                f"not {task_type} ({cell.dataset})"
            )
        if cell.spec.variable and not self.variable_ways.get(cell.algorithm, False):
            return (f"{cell.algorithm} has a fixed number of ways (it registers without "
                    "variable_ways=True): any-way any-shot episodes vary it")
        return ""


def build_plan(config: Config) -> Plan:
    """Resolve every name of ``config`` and expand it into cells; bad names fail here."""
    entries = {label: config.variants.get(label, label) for label in _unique(config.algorithms)}
    algorithms = {label: registry.get("algorithm", name) for label, name in entries.items()}
    datasets = {name: _dataset_entries(name) for name in _unique(config.datasets)}
    if config.test_dataset:
        _check_test_dataset(config, datasets)
    if config.backbone:
        registry.get("backbone", config.backbone)
    _check_hparam_targets(config.hparams, algorithms)
    task_types = {name: _task_type(entries[0]) for name, entries in datasets.items()}
    cells = tuple(_expand(config, task_types, list(algorithms)))
    hparams = {
        (label, dataset, spec.label): _hparams(config, label, entry, dataset, spec)
        for label, entry in algorithms.items() for dataset, task_type in task_types.items()
        for spec in _specs(config, task_type)
    }
    supported = {label: entry.task_types for label, entry in algorithms.items()}
    variable = {label: bool(entry.options.get("variable_ways", False))
                for label, entry in algorithms.items()}
    return Plan(config, config.budget, cells, hparams, task_types, supported,
                entries, variable)


def _dataset_entries(name: str) -> list[registry.Entry]:
    """The registry entries of a data set name (several for a multi-source name)."""
    entries = [registry.get("dataset", registered_name(part)) for part in source_names(name)]
    if len(entries) > 1 and any(_task_type(e) != CLASSIFICATION for e in entries):
        raise MetabenchError(f"multi-source data set '{name}' joins data sets that are not all "
                             "classification data sets; expected classification sources")
    return entries


def test_datasets(config: Config) -> list[str]:
    """The ``--test-dataset`` names (a comma-separated list)."""
    return _unique([p.strip() for p in str(config.test_dataset or "").split(",") if p.strip()])


def tested_on(dataset: str, config: Config) -> list[str]:
    """The data sets the cells of training data set ``dataset`` are tested on: each source
    of a multi-source data set and every ``--test-dataset``; else the ``--test-dataset``
    list, or ``dataset`` itself."""
    tests = test_datasets(config)
    if is_multi_source(dataset):
        sources = source_names(dataset)
        return sources + [t for t in tests if t not in sources]
    return tests or [dataset]


def any_shot_spec(config: Config) -> TaskSpec:
    """The any-way any-shot spec of ``--ways any --shots any`` with the sampler options."""
    options: dict[str, Any] = dict(config.sampler_options)
    known = AnyShot.__dataclass_fields__
    for name in options:
        if name not in known:
            raise MetabenchError(f"sampler option '{name}' is not known; expected one of "
                                 f"{', '.join(known)}")
    any_shot = AnyShot(**options)
    return TaskSpec(0, 0, any_shot.max_query, CLASSIFICATION, any_shot)


def _hparams(config: Config, label: str, entry: registry.Entry, dataset: str,
             spec: TaskSpec) -> Any:
    """Defaults, then the values tuning selected for this setting (``compare --tuned``), then
    ``label``'s values, then those for its ways or shots, then those for its exact setting
    (``maml@20w``, ``maml@5s``, ``maml@20w5s``): what is set by hand wins."""
    hparams = apply_overrides(label, entry.defaults, tuned_values(config, label, dataset, spec))
    for key in hparam_tables(label, spec):
        hparams = apply_overrides(label, hparams, config.hparams.get(key, {}))
    return hparams


def hparam_tables(label: str, spec: TaskSpec) -> tuple[str, ...]:
    """The hyperparameter tables that apply to ``label`` on ``spec``, weakest first."""
    return (label, *(f"{label}@{q}" for q in setting_qualifiers(spec)))


def tuned_values(config: Config, label: str, dataset: str, spec: TaskSpec) -> Mapping[str, Any]:
    """The hyperparameters a tuning selected for ``label`` on ``dataset`` and ``spec`` (empty
    without ``--tuned``)."""
    selected = config.tuning.get("selected", {}) if config.tuning else {}
    return dict(selected.get(label, {}).get(study_setting(dataset, spec), {}))


def study_setting(dataset: str, spec: TaskSpec) -> str:
    """How tuning names a setting: ``glyphs 5w1s`` (the validation data and the spec)."""
    return f"{dataset} {spec.label}"


def setting_qualifiers(spec: TaskSpec) -> tuple[str, ...]:
    """The ``@`` suffixes of hyperparameter tables that apply to a spec, weakest first."""
    if spec.task_type != CLASSIFICATION or spec.variable:
        return (spec.label,)
    return (f"{spec.ways}w", f"{spec.shots}s", spec.label)


def _check_test_dataset(config: Config, datasets: Mapping[str, list[registry.Entry]]) -> None:
    trained = {_task_type(entry) for entries in datasets.values() for entry in entries}
    for name in test_datasets(config):
        test = registry.get("dataset", registered_name(name))
        if len(trained | {_task_type(test)}) > 1:
            raise MetabenchError(
                f"test_dataset '{test.name}' is a {_task_type(test)} data set but the training "
                f"data sets are not; expected the same task type"
            )


def _expand(config: Config, task_types: Mapping[str, str], algorithms: list[str]) -> Iterable[Cell]:
    for dataset, task_type in task_types.items():
        backbone = config.backbone or DEFAULT_BACKBONES[task_type]
        for spec in _specs(config, task_type):
            for seed in _unique(config.seeds):
                for test in tested_on(dataset, config):
                    for algorithm in algorithms:
                        yield Cell(algorithm, dataset, spec, seed, backbone,
                                   test if test != dataset else "")


def _specs(config: Config, task_type: str) -> list[TaskSpec]:
    if 0 in config.ways:  # --ways any --shots any
        if task_type != CLASSIFICATION:
            raise MetabenchError(f"--ways any is for classification data sets, not {task_type}")
        return [any_shot_spec(config)]
    # Regression tasks have no classes: --ways does not multiply them.
    ways = _unique(config.ways) if task_type == CLASSIFICATION else [1]
    return [
        TaskSpec(w, s, config.queries, task_type) for w in ways for s in _unique(config.shots)
    ]


def _task_type(entry: registry.Entry) -> str:
    types = sorted(entry.task_types) or [CLASSIFICATION]
    if len(types) > 1:
        raise MetabenchError(
            f"data set '{entry.name}' declares several task types ({', '.join(types)}); "
            "expected one"
        )
    return types[0]


def _check_hparam_targets(hparams: Mapping[str, Any], algorithms: Mapping[str, Any]) -> None:
    for key in hparams:
        name, _, qualifier = key.partition("@")
        if name not in algorithms:
            raise MetabenchError(
                f"--set names algorithm '{name}', which is not in this comparison "
                f"(algorithms: {', '.join(algorithms)})"
            )
        if "@" in key and not re.fullmatch(r"\d+w|\d+s|\d+w\d+s|\d+shot|any", qualifier):
            raise MetabenchError(
                f"--set {key}: '{qualifier}' is not a setting; expected e.g. 20w, 5s, 20w5s "
                "or 10shot"
            )


def _unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


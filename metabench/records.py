"""The records a run produces, one typed record per stored row.

:class:`EpisodeRow` is a row of the ``episodes`` table, :class:`CellRow` a row of the
``cells`` table; the store's columns (and its table definitions) derive from them, so a
column is named in one place. :class:`CellResult` is what a finished cell hands to the
store and to the ``cell_finished`` hook.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from metabench.cell import Cell

CELL_STATUSES = ("ok", "failed", "skipped")
TRIAL_STATUSES = ("complete", "pruned", "failed")


class EpisodeRow(NamedTuple):
    """One test episode's scores; ``accuracy``, ``mse`` or ``avg_return`` is None where the
    task type has none. ``curve``: for an rl cell run with ``curve_steps``, the JSON list of
    the mean query return after 0, 1, ... adaptation steps (``avg_return`` is step 1's)."""

    episode: int
    accuracy: float | None
    mse: float | None
    loss: float | None
    avg_return: float | None = None
    curve: str | None = None


@dataclass
class CellIdentity:
    """Which cell a row is: the columns that come from the plan."""

    key: str
    algorithm: str
    dataset: str
    test_dataset: str
    task_type: str
    ways: int
    shots: int
    queries: int
    seed: int
    backbone: str


@dataclass
class CellOutcome:
    """What a cell produced: status and reason, budget use, profile, hyperparameters, curve,
    and the protocol details that are not in its identity (checkpoint tested, training
    spec where it differs, the algorithm's ``protocol_details()``)."""

    status: str = field(default="ok", metadata={"check": CELL_STATUSES})
    reason: str = ""
    budget: str = ""
    steps: int = 0
    train_episodes: int = 0
    best_step: int | None = None
    device: str = ""
    started: str | None = None
    finished: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)


@dataclass
class CellRow(CellOutcome, CellIdentity):
    """One cell as stored: its identity, then its outcome (dicts and lists as JSON)."""

    def values(self) -> list[Any]:
        """The field values in column order."""
        return [getattr(self, name) for name in CELL_COLUMNS]


CELL_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CellRow))
EPISODE_COLUMNS: tuple[str, ...] = EpisodeRow._fields
IDENTITY_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CellIdentity))
OUTCOME_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CellOutcome))


def cell_identity(cell: Cell) -> CellIdentity:
    """The identity columns of a cell's row."""
    spec = cell.spec
    return CellIdentity(cell.key, cell.algorithm, cell.dataset, cell.tested_on, spec.task_type,
                        spec.ways,
                        spec.shots, spec.queries, cell.seed, cell.backbone)


@dataclass
class CellResult(CellOutcome):
    """A finished cell: the :class:`CellOutcome` fields, the ``cell`` and its test episodes."""

    cell: Cell = field(kw_only=True)
    episodes: list[EpisodeRow] = field(default_factory=list)

    def row(self) -> CellRow:
        """The cell's row for :meth:`metabench.store.Store.save_cell`."""
        outcome = {name: getattr(self, name) for name in OUTCOME_COLUMNS}
        return CellRow(**dataclasses.asdict(cell_identity(self.cell)), **outcome)


@dataclass
class TrialOutcome:
    """What one tuning trial gave on one seed: its hyperparameters, its validation score
    (``value``, in the metric's own unit: the best point of its validation curve, or the
    last with ``checkpoint = "last"``), status and reason, budget use and curve."""

    study: str  # algorithm and setting: "fomaml glyphs 5w1s"
    number: int  # the trial's number within its study, from 0
    params: dict[str, Any]
    status: str = field(default="complete", metadata={"check": TRIAL_STATUSES})
    reason: str = ""
    value: float | None = None
    metric: str = ""
    budget: str = ""
    steps: int = 0
    train_episodes: int = 0
    seconds: float | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    started: str | None = None
    finished: str | None = None


@dataclass
class TrialRow(TrialOutcome, CellIdentity):
    """One trial on one seed as stored in the ``trials`` table (its cell's identity first)."""

    def values(self) -> list[Any]:
        """The field values in column order."""
        return [getattr(self, name) for name in TRIAL_COLUMNS]


TRIAL_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrialRow))


def sql_columns(record: type) -> str:
    """Column definitions for a table whose rows are ``record`` (a dataclass or NamedTuple)."""
    hints = typing.get_type_hints(record)
    checks = ({f.name: f.metadata.get("check") for f in dataclasses.fields(record)}
              if dataclasses.is_dataclass(record) else {})
    parts = []
    for name, annotation in hints.items():
        parts.append(f"{name} {_sql_type(annotation)}")
        if checks.get(name):
            allowed = ", ".join(f"'{value}'" for value in checks[name] or ())
            parts[-1] += f" CHECK ({name} IN ({allowed}))"
    return ",\n    ".join(parts)


def _sql_type(annotation: Any) -> str:
    args = typing.get_args(annotation)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if optional else annotation
    base = typing.get_origin(base) or base
    kind = {int: "INTEGER", float: "REAL", str: "TEXT"}.get(base, "TEXT")  # dict/list: JSON text
    return kind if optional else f"{kind} NOT NULL"

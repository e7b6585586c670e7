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

from metabench.plan import Cell

CELL_STATUSES = ("ok", "failed", "skipped")


class EpisodeRow(NamedTuple):
    """One test episode's scores; ``accuracy`` or ``mse`` is None where the task type has none."""

    episode: int
    accuracy: float | None
    mse: float | None
    loss: float | None


@dataclass(frozen=True)
class CellRow:
    """One cell as stored: its identity, then its outcome (JSON for dicts and lists)."""

    key: str
    algorithm: str
    dataset: str
    task_type: str
    ways: int
    shots: int
    queries: int
    seed: int
    backbone: str
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

    def values(self) -> list[Any]:
        """The field values in column order."""
        return [getattr(self, name) for name in CELL_COLUMNS]


CELL_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CellRow))
EPISODE_COLUMNS: tuple[str, ...] = EpisodeRow._fields
# The columns that say which cell a row is (the rest say what it produced).
IDENTITY_COLUMNS: tuple[str, ...] = CELL_COLUMNS[: CELL_COLUMNS.index("status")]


def cell_identity(cell: Cell) -> dict[str, Any]:
    """The identity columns of a cell's row."""
    spec = cell.spec
    return {"key": cell.key, "algorithm": cell.algorithm, "dataset": cell.dataset,
            "task_type": spec.task_type, "ways": spec.ways, "shots": spec.shots,
            "queries": spec.queries, "seed": cell.seed, "backbone": cell.backbone}


@dataclass
class CellResult:
    """What a cell produced: status (ok, failed, skipped) and reason, budget use, profile,
    hyperparameters, learning curve and its test episodes."""

    cell: Cell
    status: str
    reason: str = ""
    budget: str = ""
    steps: int = 0
    train_episodes: int = 0
    best_step: int | None = None
    device: str = ""
    started: str = ""
    finished: str = ""
    profile: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[EpisodeRow] = field(default_factory=list)

    def row(self) -> CellRow:
        """The cell's row for :meth:`metabench.store.Store.save_cell`."""
        identity = cell_identity(self.cell)
        outcome = {name: getattr(self, name) for name in CELL_COLUMNS if name not in identity}
        return CellRow(**identity, **outcome)


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

"""The comparison plan: a Config from flags or TOML, a Budget, and the cells it expands into.

A cell is one algorithm x data set x TaskSpec x seed. Cells are ordered so that all
algorithms of one (data set, spec, seed) group run one after the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metabench import registry
from metabench.errors import MetabenchError
from metabench.hparams import apply_overrides, parse_assignments
from metabench.protocol import CLASSIFICATION, REGRESSION, TaskSpec

LATEST = "latest"  # --resume without a run id: the newest run with the same config
DEFAULT_ALGORITHMS = ("maml", "fomaml", "protonet", "reptile")
# Sized so the default run (8 cells on glyphs) ends within 10 minutes on a 2-core CPU:
# 8 x 15 s of training; testing (600 episodes per cell) and validation take the rest.
DEFAULT_BUDGET = "time:15s"
DEFAULT_BACKBONES = {CLASSIFICATION: "conv4", REGRESSION: "mlp"}
# Options that do not change what is computed: a resumed run may differ in these.
RUNTIME_FIELDS = ("device", "out", "plugins", "data_root", "cache_dir", "download", "confidence",
                  "alpha", "margin", "backend", "address", "cpus_per_cell", "gpus_per_cell",
                  "max_retries")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_TIME = re.compile(r"^(\d+(?:\.\d*)?)\s*([smh]?)$")


@dataclass(frozen=True)
class Budget:
    """The meta-training budget of every algorithm in a cell group.

    ``kind`` is ``episodes`` (training episodes, however they are batched) or ``time``
    (seconds of meta-training, validation excluded).
    """

    kind: str
    amount: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse ``episodes:20000`` or ``time:5m`` (also ``30s``, ``1h``, ``90``)."""
        kind, sep, value = str(text).strip().partition(":")
        if not sep or kind not in ("episodes", "time"):
            raise _budget_error(text)
        if kind == "episodes":
            return cls(kind, float(_positive_int(text, value)))
        match = _TIME.match(value.strip())
        if not match or float(match.group(1)) <= 0:
            raise _budget_error(text)
        return cls(kind, float(match.group(1)) * _UNITS[match.group(2) or "s"])

    @property
    def label(self) -> str:
        """The budget as text, e.g. ``episodes:20000`` or ``time:40s``."""
        if self.kind == "episodes":
            return f"episodes:{int(self.amount)}"
        return f"time:{self.amount:g}s"


def _positive_int(text: str, value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise _budget_error(text)
    return int(value)


def _budget_error(text: str) -> MetabenchError:
    return MetabenchError(
        f"budget '{text}' is not valid; expected episodes:N (N >= 1) or time:T with T like "
        "30s, 5m or 1h"
    )


@dataclass(frozen=True)
class Config:
    """Every option of a comparison; the CLI flags, the TOML file and ``compare()`` fill it."""

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    datasets: tuple[str, ...] = ("glyphs",)
    ways: tuple[int, ...] = (5,)
    shots: tuple[int, ...] = (1, 5)
    queries: int = 15
    episodes: int = 600
    seeds: tuple[int, ...] = (0,)
    budget: str = DEFAULT_BUDGET
    backbone: str | None = None
    hparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    val_episodes: int = 40
    val_points: int = 4
    confidence: float = 0.95
    alpha: float = 0.05
    margin: float = 0.0
    data_root: str | None = None
    cache_dir: str | None = None
    download: bool = False
    plugins: tuple[str, ...] = ()
    device: str = "auto"
    out: str = "results"
    backend: str = "local"
    address: str | None = None
    cpus_per_cell: int = 1
    gpus_per_cell: float = 0.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        for name in ("algorithms", "datasets", "ways", "shots", "seeds"):
            if not getattr(self, name):
                raise MetabenchError(f"{name} is empty; give at least one value")
        for name, low in (("queries", 1), ("episodes", 2), ("val_episodes", 1), ("val_points", 1)):
            if getattr(self, name) < low:
                raise MetabenchError(f"{name}={getattr(self, name)} is too small; expected >= {low}")
        for name in ("confidence", "alpha"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise MetabenchError(f"{name}={getattr(self, name)} must lie strictly between 0 and 1")
        if self.margin < 0:
            raise MetabenchError(f"margin={self.margin} is negative; expected >= 0")
        for name, low in (("cpus_per_cell", 1), ("max_retries", 0)):
            if getattr(self, name) < low:
                raise MetabenchError(f"{name}={getattr(self, name)} is too small; expected >= {low}")
        if self.gpus_per_cell < 0:
            raise MetabenchError(f"gpus_per_cell={self.gpus_per_cell} is negative; expected >= 0")
        Budget.parse(self.budget)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = dataclasses.asdict(self)
        data["hparams"] = {k: dict(v) for k, v in self.hparams.items()}
        return data

    def plan_fields(self) -> dict[str, Any]:
        """The fields that decide the results (all but the runtime ones)."""
        data = self.to_dict()
        return {k: v for k, v in data.items() if k not in RUNTIME_FIELDS}

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`plan_fields`, to find a run with the same config."""
        text = json.dumps(self.plan_fields(), sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_LISTS = {"algorithms": str, "datasets": str, "ways": int, "shots": int, "seeds": int, "plugins": str}
_SCALARS = {"queries": int, "episodes": int, "val_episodes": int, "val_points": int,
            "confidence": float, "alpha": float, "margin": float, "download": bool,
            "cpus_per_cell": int, "gpus_per_cell": float, "max_retries": int}
_ALIASES = {"algorithm": "algorithms", "dataset": "datasets", "seed": "seeds", "set": "hparams",
            "plugin": "plugins"}


def make_config(options: Mapping[str, Any], base: Config | None = None) -> Config:
    """``base`` (or the defaults) with ``options`` applied; ``None`` values are ignored.

    Lists may be sequences or comma-separated strings; ``hparams`` (or ``set``) may be a
    list of ``algo.key=value`` strings or a ``{algo: {key: value}}`` table.
    """
    values = base.to_dict() if base else {}
    for raw_key, value in options.items():
        key = _ALIASES.get(raw_key.replace("-", "_"), raw_key.replace("-", "_"))
        if key not in _FIELDS:
            raise MetabenchError(f"unknown option '{raw_key}'; known: {', '.join(sorted(_FIELDS))}")
        if value is not None:
            values[key] = _normalise(key, value, values.get(key))
    return Config(**values)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The options of a TOML config file (top level, or under a ``[compare]`` table)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MetabenchError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise MetabenchError(f"config file {path} is not valid TOML: {error}") from None
    return dict(data.get("compare", data))


def _normalise(key: str, value: Any, previous: Any) -> Any:
    if key in _LISTS:
        return _as_tuple(key, value, _LISTS[key])
    if key in _SCALARS:
        return _as_scalar(key, value, _SCALARS[key])
    if key == "hparams":
        return _as_hparams(value, previous)
    return None if value is None else str(value)


def _as_tuple(key: str, value: Any, kind: type) -> tuple:
    items = value.split(",") if isinstance(value, str) else list(value)
    parts = [str(item).strip() for item in items if str(item).strip()]
    try:
        return tuple(kind(part) for part in parts)
    except ValueError:
        raise MetabenchError(f"{key}={value!r} is not a list of {kind.__name__}s") from None


def _as_scalar(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise MetabenchError(f"{key}={value!r} is not true or false")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise MetabenchError(f"{key}={value!r} is not a valid {kind.__name__}") from None


def _as_hparams(value: Any, previous: Any) -> dict[str, dict[str, Any]]:
    merged = {k: dict(v) for k, v in (previous or {}).items()}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        parsed = {str(k): dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
        bad = [k for k, v in parsed.items() if not isinstance(v, dict)]
        if bad:
            raise MetabenchError(
                f"hparams.{bad[0]} must be a table of NAME = VALUE (e.g. [hparams.{bad[0]}])"
            )
    else:
        parsed = parse_assignments(list(value))
    for algorithm, changes in parsed.items():
        merged.setdefault(algorithm, {}).update(changes)
    return merged


@dataclass(frozen=True)
class Cell:
    """One unit of work: an algorithm trained and tested on one data set, spec and seed."""

    algorithm: str
    dataset: str
    spec: TaskSpec
    seed: int
    backbone: str

    @property
    def group(self) -> str:
        """The cell group: cells that share data, spec, seed and so the test episodes."""
        return f"{self.dataset}/{self.spec.label}q{self.spec.queries}/seed{self.seed}"

    @property
    def key(self) -> str:
        """Unique within a run, e.g. ``maml/glyphs/5w1sq15/seed0``."""
        return f"{self.algorithm}/{self.group}"

    @property
    def setting(self) -> str:
        """The data set and spec, e.g. ``glyphs 5w1s``."""
        return f"{self.dataset} {self.spec.label}"


@dataclass(frozen=True)
class Plan:
    """The resolved comparison: the cells, the budget and each algorithm's hyperparameters."""

    config: Config
    budget: Budget
    cells: tuple[Cell, ...]
    hparams: Mapping[str, Any]
    task_types: Mapping[str, str]
    supported: Mapping[str, frozenset[str]]

    def skip_reason(self, cell: Cell) -> str:
        """Why a cell cannot run (empty when it can)."""
        task_type = self.task_types[cell.dataset]
        supported = self.supported[cell.algorithm]
        if supported and task_type not in supported:
            return (
                f"{cell.algorithm} supports {', '.join(sorted(supported))} tasks, "
                f"not {task_type} ({cell.dataset})"
            )
        return ""


def build_plan(config: Config) -> Plan:
    """Resolve every name of ``config`` and expand it into cells; bad names fail here."""
    algorithms = {name: registry.get("algorithm", name) for name in _unique(config.algorithms)}
    datasets = {name: registry.get("dataset", name) for name in _unique(config.datasets)}
    if config.backbone:
        registry.get("backbone", config.backbone)
    _check_hparam_targets(config.hparams, algorithms)
    hparams = {
        name: apply_overrides(name, entry.defaults, config.hparams.get(name, {}))
        for name, entry in algorithms.items()
    }
    task_types = {name: _task_type(entry) for name, entry in datasets.items()}
    cells = tuple(_expand(config, task_types, list(algorithms)))
    supported = {name: entry.task_types for name, entry in algorithms.items()}
    return Plan(config, Budget.parse(config.budget), cells, hparams, task_types, supported)


def _expand(config: Config, task_types: Mapping[str, str], algorithms: list[str]) -> Iterable[Cell]:
    for dataset, task_type in task_types.items():
        backbone = config.backbone or DEFAULT_BACKBONES[task_type]
        for spec in _specs(config, task_type):
            for seed in _unique(config.seeds):
                for algorithm in algorithms:
                    yield Cell(algorithm, dataset, spec, seed, backbone)


def _specs(config: Config, task_type: str) -> list[TaskSpec]:
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
    for name in hparams:
        if name not in algorithms:
            raise MetabenchError(
                f"--set names algorithm '{name}', which is not in this comparison "
                f"(algorithms: {', '.join(algorithms)})"
            )


def _unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


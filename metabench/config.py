"""A comparison's options: :class:`Config` from flags, TOML or ``compare()`` arguments (its
training budgets are :mod:`metabench.budget`'s). Everything here checks form only; names
resolve in :mod:`metabench.plan`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metabench import values
from metabench.budget import Budget, check_setting_budgets, parse_setting_budgets
from metabench.errors import MetabenchError
from metabench.hparams import parse_assignments
from metabench.protocol import ANY

LATEST = "latest"  # --resume without a run id: the newest run with the same config
DEFAULT_ALGORITHMS = ("maml", "fomaml", "protonet", "reptile")
# Sized so the default run (8 cells on glyphs) ends within 10 minutes on a 2-core CPU:
# 8 x 15 s of training; testing (600 episodes per cell) and validation take the rest.
DEFAULT_BUDGET = "time:15s"
# Options that do not change what is computed: a resumed run may differ in these.
RUNTIME_FIELDS = ("device", "out", "plugins", "data_root", "cache_dir", "download", "confidence",
                  "alpha", "margin", "backend", "address", "gpus_per_cell", "max_retries", "tuned",
                  "jobs")
#: Torch threads of every cell (``--threads``, also ``--cpus-per-cell``): torch's CPU results
#: depend on it, so it is part of the plan, the same on every backend (Ray reserves as many
#: CPUs per cell). Runs at the default keep the fingerprints they had before it was recorded.
DEFAULT_THREADS = 1
#: What the store holds: SQLite integers are signed 64-bit.
SEED_RANGE = (-(2**63), 2**63 - 1)
# Inclusive ranges of the numeric options (None: unbounded on that side).
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "queries": (1, 100_000), "episodes": (2, 10**8), "val_episodes": (1, 10**7),
    "val_points": (1, 10**5), "cpus_per_cell": (1, 4096), "gpus_per_cell": (0, 4096),
    "max_retries": (0, 1000), "margin": (0, None), "ways": (0, 100_000), "shots": (0, 100_000),
    "seeds": SEED_RANGE,
}
CHECKPOINTS = ("best", "last")  # the weights tested: best on validation, or the last ones
@dataclass(frozen=True)
class Config:
    """Every option of a comparison; the CLI flags, the TOML file and ``compare()`` fill it."""

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    datasets: tuple[str, ...] = ("glyphs",)
    test_dataset: str | None = None
    dataset_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)
    ways: tuple[int, ...] = (5,)  # (0,): "any", the any-way any-shot sampler
    shots: tuple[int, ...] = (1, 5)
    sampler_options: Mapping[str, float] = field(default_factory=dict)
    queries: int = 15
    episodes: int = 600
    seeds: tuple[int, ...] = (0,)
    budget: Budget = field(default_factory=lambda: Budget.parse(DEFAULT_BUDGET))
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    backbone: str | None = None
    hparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    val_episodes: int = 40
    val_points: int = 4
    checkpoint: str = "best"
    curve_steps: int = 0
    tuned: str | None = None
    tuning: Mapping[str, Any] = field(default_factory=dict)
    preset: str | None = None
    scale: float = 1.0
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
    jobs: int | str = 1

    def __post_init__(self) -> None:
        for name in ("algorithms", "datasets", "ways", "shots", "seeds"):
            if not getattr(self, name):
                raise MetabenchError(f"{name} is empty; give at least one value")
        for name, (low, high) in _RANGES.items():
            values = getattr(self, name)
            for value in values if isinstance(values, tuple) else (values,):
                check_number(name, value, low, high)
        for name in ("confidence", "alpha"):
            value = getattr(self, name)
            if not (_finite(value) and 0.0 < value < 1.0):
                raise MetabenchError(f"{name}={value} must lie strictly between 0 and 1")
        if self.checkpoint not in CHECKPOINTS:
            raise MetabenchError(f"checkpoint={self.checkpoint!r} is not known; expected "
                                 f"{' or '.join(CHECKPOINTS)}")
        if not (_finite(self.scale) and 0.0 < self.scale <= 1000.0):
            raise MetabenchError(f"scale={self.scale} must be positive (above 0, at most 1000)")
        check_number("curve_steps", self.curve_steps, 0, 1000)
        check_jobs(self.jobs)
        _check_variants(self.variants)
        _check_any_shot(self.ways, self.shots, self.sampler_options)
        check_setting_budgets(self.budget, self.budgets)

    def job_count(self) -> int:
        """How many cells the local backend runs at once: ``jobs``, or for ``auto`` one per
        ``cpus_per_cell`` cores of this machine (at least 1)."""
        if self.jobs == AUTO_JOBS:
            return max((os.cpu_count() or 1) // self.cpus_per_cell, 1)
        return int(self.jobs)

    def budget_for(self, qualifiers: Sequence[str]) -> Budget:
        """The budget of a setting: that of its strongest qualifier in ``budgets`` (``20w``,
        ``5s``, ``20w5s``; weakest first in ``qualifiers``), else ``budget``."""
        found = [self.budgets[q] for q in qualifiers if q in self.budgets]
        return found[-1] if found else self.budget

    def budget_text(self) -> str:
        """``steps:100000``, or with per-setting budgets ``steps:100000 (20w: steps:200000)``."""
        extra = ", ".join(f"{q}: {b.label}" for q, b in self.budgets.items())
        return f"{self.budget.label} ({extra})" if extra else self.budget.label

    def scaled(self, factor: float) -> Config:
        """This config with every budget times ``factor`` (``scale`` records it)."""
        return dataclasses.replace(
            self, budget=self.budget.scaled(factor),
            budgets={q: b.scaled(factor) for q, b in self.budgets.items()},
            scale=factor)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = dataclasses.asdict(self)
        for name in ("hparams", "dataset_options"):
            data[name] = {k: dict(v) for k, v in getattr(self, name).items()}
        data["variants"] = dict(self.variants)
        data["budget"] = self.budget.label
        data["budgets"] = {q: b.label for q, b in self.budgets.items()}
        data["sampler_options"] = dict(self.sampler_options)
        data["tuning"] = json.loads(json.dumps(dict(self.tuning), default=str))
        return data

    def plan_fields(self) -> dict[str, Any]:
        """The fields that decide the results (all but the runtime ones)."""
        data = self.to_dict()
        for name, default in ADDED_FIELDS.items():  # runs stored before a field keep their fingerprints
            if data[name] == default:
                del data[name]
        if data["cpus_per_cell"] == DEFAULT_THREADS:  # as before threads were recorded
            del data["cpus_per_cell"]
        return {k: v for k, v in data.items() if k not in RUNTIME_FIELDS}

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`plan_fields`, to find a run with the same config."""
        text = json.dumps(self.plan_fields(), sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# Fields added after runs were stored: left out of plan_fields at these values.
ADDED_FIELDS: dict[str, Any] = {"tuning": {}, "budgets": {}, "curve_steps": 0,
                                 "sampler_options": {}}
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_LISTS = {"algorithms": str, "datasets": str, "ways": int, "shots": int, "seeds": int, "plugins": str}
_SCALARS = {"queries": int, "episodes": int, "val_episodes": int, "val_points": int, "scale": float,
            "confidence": float, "alpha": float, "margin": float, "download": bool, "curve_steps": int,
            "cpus_per_cell": int, "gpus_per_cell": float, "max_retries": int}
_ALIASES = {"algorithm": "algorithms", "dataset": "datasets", "seed": "seeds", "set": "hparams",
            "plugin": "plugins", "dataset_option": "dataset_options", "variant": "variants",
            "sampler_option": "sampler_options", "threads": "cpus_per_cell",
            "setting_budget": "budgets"}


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None) -> None:
    """Fail in one line unless ``value`` is a finite number within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise MetabenchError(f"{name}={value!r} is not a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = (f"from {low} to {high}" if low is not None and high is not None
                   else f">= {low}" if low is not None else f"<= {high}")
        size = "too small" if low is not None and value < low else "too large"
        raise MetabenchError(f"{name}={value} is {size} (out of range); expected {allowed}")


#: ``--jobs auto``: as many cells at once as the cores hold at ``--threads`` each.
AUTO_JOBS = "auto"
MAX_JOBS = 4096


def check_jobs(value: Any) -> None:
    """Fail in one line unless ``value`` is a whole number from 1 to :data:`MAX_JOBS` or
    ``auto``."""
    if value == AUTO_JOBS or (isinstance(value, int) and not isinstance(value, bool)
                              and 1 <= value <= MAX_JOBS):
        return
    raise MetabenchError(f"jobs={value!r} is not valid; expected a whole number from 1 to "
                         f"{MAX_JOBS} or auto")


def _as_jobs(value: Any) -> int | str:
    """``auto``, or a whole number (also as text)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO_JOBS:
            return AUTO_JOBS
        if text.isascii() and text.isdigit():
            value = int(text)
    check_jobs(value)
    return int(value) if value != AUTO_JOBS else AUTO_JOBS


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except (TypeError, OverflowError):
        return isinstance(value, int)


def make_config(options: Mapping[str, Any], base: Config | None = None) -> Config:
    """``base`` (or the defaults) with ``options`` applied; ``None`` values are ignored.

    Lists may be sequences or comma-separated strings; ``hparams`` (or ``set``) may be a
    list of ``algo.key=value`` strings or a ``{algo: {key: value}}`` table.
    """
    if not isinstance(options, Mapping):
        raise MetabenchError(f"options must be a table of NAME = VALUE, not {type(options).__name__}")
    values = base.to_dict() if base else {}
    if base:  # typed values stay typed
        values.update(budget=base.budget, budgets=dict(base.budgets))
    for raw_key, value in options.items():
        if not isinstance(raw_key, str):
            raise MetabenchError(f"option name {raw_key!r} is not text")
        key = _ALIASES.get(raw_key.replace("-", "_"), raw_key.replace("-", "_"))
        if key not in _FIELDS:
            raise MetabenchError(f"unknown option {raw_key!r}; known: {', '.join(sorted(_FIELDS))}")
        if value is not None:
            values[key] = _normalise(key, value, values.get(key))
    return Config(**values)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The options of a TOML config file (top level, or under a ``[compare]`` table); a
    ``[tune]`` table holds ``metabench tune``'s own options (:func:`load_toml_table`)."""
    data = _read_toml(path)
    options = data.get("compare", data)
    if not isinstance(options, Mapping):
        raise MetabenchError(f"config file {path}: 'compare' must be a table ([compare]), "
                             f"not {options!r}")
    options = dict(options)
    options.pop("tune", None)
    return options


def load_toml_table(path: str | Path, name: str) -> dict[str, Any]:
    """One top-level table of a TOML config file (empty when absent)."""
    table = _read_toml(path).get(name, {})
    if not isinstance(table, Mapping):
        raise MetabenchError(f"config file {path}: '{name}' must be a table ([{name}])")
    return dict(table)


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MetabenchError(f"config file {path} does not exist") from None
    except OSError as error:
        raise MetabenchError(f"config file {path} cannot be read: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise MetabenchError(f"config file {path} is not valid TOML: {error}") from None


def _normalise(key: str, value: Any, previous: Any) -> Any:
    if key in _LISTS:
        return _as_tuple(key, value, _LISTS[key])
    if key in _SCALARS:
        return _as_scalar(key, value, _SCALARS[key])
    if key in ("hparams", "dataset_options"):
        return _as_tables(key, value, previous)
    if key == "variants":
        return _as_variants(value, previous)
    if key == "budget":
        return value if isinstance(value, Budget) else Budget.parse(_as_text(key, value))
    if key == "budgets":
        return parse_setting_budgets(value, previous)
    if key == "sampler_options":
        return _as_sampler_options(value, previous)
    if key == "test_dataset" and isinstance(value, list | tuple):
        return ",".join(_as_text(key, item).strip() for item in value)
    if key == "jobs":
        return _as_jobs(value)
    if key == "tuning":
        if not isinstance(value, Mapping):
            raise MetabenchError(f"tuning={value!r} is not a table")
        return dict(value)
    return _as_text(key, value)


def _as_text(key: str, value: Any) -> str:
    if isinstance(value, os.PathLike) and key in ("out", "data_root", "cache_dir"):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise MetabenchError(f"{key}={value!r} is not text; expected a string")
    if "\x00" in value:
        raise MetabenchError(f"{key}={value!r} contains a NUL character")
    return value


def _as_tuple(key: str, value: Any, kind: type) -> tuple:
    """A list option from a comma-separated string, a list, or one value; every item must be
    of ``kind`` (no empty items, no floats for whole numbers, no nested lists)."""
    if isinstance(value, str):
        items: list[Any] = [item.strip() for item in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    elif kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        items = [value]
    else:
        raise MetabenchError(f"{key}={value!r} is not a list; expected comma-separated "
                             f"{_KIND_WORDS[kind]} or a list of them")
    if any(isinstance(item, str) and not item.strip() for item in items):
        raise MetabenchError(f"{key}={value!r} has an empty item; expected comma-separated "
                             f"{_KIND_WORDS[kind]}")
    return tuple(_as_item(key, value, item, kind) for item in items)


_KIND_WORDS = {str: "names", int: "whole numbers"}


def _as_item(key: str, value: Any, item: Any, kind: type) -> Any:
    if key in ("ways", "shots") and isinstance(item, str) and item.strip().lower() == ANY:
        return 0  # "any": the any-way any-shot sampler, stored as 0
    if kind is str and isinstance(item, str):
        return _as_text(key, item.strip())
    if kind is int:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            return int(item)
        if isinstance(item, str) and values.INTEGER.match(item.strip()):
            return int(item.strip())
    raise MetabenchError(f"{key}={value!r} is not a list of {kind.__name__}s: item {item!r} is "
                         f"not valid; expected {_KIND_WORDS[kind]}")


def _as_scalar(key: str, value: Any, kind: type) -> Any:
    if kind is bool and not isinstance(value, bool):
        raise MetabenchError(f"{key}={value!r} is not true or false")
    if isinstance(value, str):
        value = value.strip()
    try:
        return values.exact(key, value, kind)
    except MetabenchError as error:
        if "finite" in str(error) or "range" in str(error):
            raise
        raise MetabenchError(f"{key}={value!r} is not a {_SCALAR_WORDS[kind]}") from None


_SCALAR_WORDS = {int: "whole number", float: "number"}


def _as_tables(key: str, value: Any, previous: Any) -> dict[str, dict[str, Any]]:
    """``{owner: {name: value}}`` from a table or ``owner.name=value`` strings, merged."""
    merged = {k: dict(v) for k, v in (previous or {}).items()}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        parsed = {str(k): {str(n): v for n, v in v.items()} if isinstance(v, Mapping) else v
                  for k, v in value.items()}
        bad = [k for k, v in parsed.items() if not isinstance(v, dict)]
        if bad:
            raise MetabenchError(
                f"{key}.{bad[0]} must be a table of NAME = VALUE (e.g. [{key}.{bad[0]}])"
            )
        for owner, table in parsed.items():
            for name, item in table.items():
                _check_value(f"{key}.{owner}.{name}", item)
    else:
        flag = "--set" if key == "hparams" else "--dataset-option"
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise MetabenchError(f"{key}={value!r} is not a table or a list of OWNER.NAME=VALUE")
        parsed = parse_assignments(list(value), flag)
    for owner, changes in parsed.items():
        merged.setdefault(owner, {}).update(changes)
    return merged


def _check_value(name: str, value: Any) -> None:
    """A table value must be a plain TOML value: text, a finite number, true/false or a list."""
    if isinstance(value, float) and not _finite(value):
        raise MetabenchError(f"{name}={value!r} is not a finite number")
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(name, item)
    elif isinstance(value, Mapping) or not isinstance(value, str | int | float | bool):
        raise MetabenchError(f"{name}={value!r} is not a plain value (text, number, true/false "
                             "or a list of them)")


def _as_variants(value: Any, previous: Any) -> dict[str, str]:
    """``{label: algorithm}`` from a table or ``label=algorithm`` strings, merged."""
    merged = dict(previous or {})
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    elif not isinstance(value, str | list | tuple):
        raise MetabenchError(f"variants={value!r} is not a table or a list of LABEL=ALGORITHM")
    else:
        items = [value] if isinstance(value, str) else list(value)
        pairs = [(label.strip(), algorithm.strip())
                 for label, _, algorithm in (str(item).partition("=") for item in items)]
    for label, algorithm in pairs:
        if not label or not isinstance(algorithm, str) or not algorithm:
            raise MetabenchError(f"variant {label}={algorithm!r} is not of the form "
                                 "LABEL=ALGORITHM (e.g. reptile-transductive=reptile)")
        merged[label] = algorithm
    return merged


def _as_sampler_options(value: Any, previous: Any) -> dict[str, float]:
    """``{name: number}`` from a table or ``name=value`` strings, merged."""
    merged = dict(previous or {})
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str | list | tuple):
        items = [value] if isinstance(value, str) else list(value)
        pairs = [(name.strip(), number.strip())
                 for name, _, number in (str(item).partition("=") for item in items)]
    else:
        raise MetabenchError(f"sampler_options={value!r} is not a table or a list of "
                             "NAME=NUMBER (e.g. max_ways=20)")
    for name, number in pairs:
        literal: Any = values.number_literal(number) if isinstance(number, str) else number
        try:
            parsed = float(literal)  # None (text that is not a number) fails too
        except (TypeError, ValueError, OverflowError):
            raise MetabenchError(f"sampler option {name}={number!r} is not of the form "
                                 "NAME=NUMBER (e.g. max_ways=20)") from None
        if not math.isfinite(parsed):
            raise MetabenchError(f"sampler option {name}={number!r} is not a finite number")
        merged[name] = int(parsed) if parsed.is_integer() and "log" not in name else parsed
    return merged


def _check_any_shot(ways: tuple[int, ...], shots: tuple[int, ...],
                    options: Mapping[str, float]) -> None:
    if ways == (0,) and shots == (0,):  # "any": the any-way any-shot sampler
        return
    for name, given, low in (("shots", shots, 1), ("ways", ways, 2)):
        if 0 in given:
            raise MetabenchError(f"{name}=0 is too small; expected >= {low}, or 'any' alone for "
                                 "both ways and shots (--ways any --shots any)")
    if options:
        raise MetabenchError("sampler options are for --ways any --shots any; this run has "
                             "fixed ways and shots")


def _check_variants(variants: Mapping[str, str]) -> None:
    for label, algorithm in variants.items():
        if "@" in label or "." in label or "/" in label:
            raise MetabenchError(f"variant label {label!r} may not contain '@', '.' or '/'")
        if algorithm in variants:
            raise MetabenchError(f"variant {label!r} is of {algorithm!r}, itself a variant; "
                                 "expected a registered algorithm")

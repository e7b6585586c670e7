"""Data sets: the interfaces the episode sampler reads, and building registered data sets.

``build_dataset(name, data_root=..., download=..., cache_dir=..., **options)`` is the one way
to construct a registered data set (see :mod:`metabench.data.base` for the convention);
``describe_datasets`` lists every registered one for ``metabench datasets``.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from metabench import registry
from metabench.data.base import (
    ClassificationDataset,
    ClassSplit,
    Dataset,
    InMemoryDataset,
    RegressionDataset,
    cache_root,
)
from metabench.errors import MetabenchError

STANDARD_OPTIONS = ("data_root", "download", "cache_dir")

__all__ = [
    "STANDARD_OPTIONS",
    "ClassSplit",
    "ClassificationDataset",
    "Dataset",
    "InMemoryDataset",
    "RegressionDataset",
    "build_dataset",
    "cache_root",
    "describe_datasets",
]


def build_dataset(
    name: str,
    *,
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **options: Any,
) -> Dataset:
    """Construct the data set registered as ``name``.

    The standard options go only to factories that accept them; ``options`` must be
    parameters of the factory (string values are converted to the type of the parameter's
    default, so ``rotations="true"`` from a command line works).
    """
    factory = registry.get("dataset", name).factory
    standard = {"data_root": data_root, "download": download, "cache_dir": cache_dir}
    parameters = _parameters(factory)
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    kwargs = {k: v for k, v in standard.items() if k in parameters or (open_ended and v)}
    for key, value in options.items():
        if key not in parameters and not open_ended:
            known = ", ".join(k for k, p in parameters.items() if p.kind is not p.VAR_KEYWORD)
            raise MetabenchError(
                f"data set '{name}' has no option '{key}'; its options are {known or '(none)'}"
            )
        kwargs[key] = _coerce(name, key, value, parameters.get(key))
    return factory(**kwargs)


def describe_datasets(
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    names: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every registered data set (or those in ``names``): classes per split, examples, source.

    A data set that cannot be read (no data root, missing files) is listed with a ``note``
    saying why instead of failing the listing.
    """
    entries = registry.get_datasets()
    rows = []
    for name in names or list(entries):
        entry = entries[name] if name in entries else registry.get("dataset", name)
        try:
            info = build_dataset(name, data_root=data_root, cache_dir=cache_dir).describe()
            info["note"] = ""
        except MetabenchError as error:
            info = {"name": name, "task_type": ", ".join(sorted(entry.task_types)),
                    "classes": None, "examples_per_class": None, "input_shape": None,
                    "source": "", "note": str(error)}
        info.update(name=name, plugin=entry.plugin, description=entry.description)
        rows.append(info)
    return rows


def _parameters(factory: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}


def _coerce(dataset: str, key: str, value: Any, parameter: inspect.Parameter | None) -> Any:
    """A command-line string converted to the type of the parameter's default."""
    if not isinstance(value, str) or parameter is None or parameter.default is inspect.Parameter.empty:
        return value
    default = parameter.default
    if isinstance(default, bool):
        try:
            return _as_bool(value)
        except ValueError:
            raise MetabenchError(
                f"data set '{dataset}' option {key}={value!r} is invalid; expected true or false"
            ) from None
    if isinstance(default, int | float):
        try:
            return type(default)(value)
        except ValueError:
            return value  # the factory validates values such as image_size="keep"
    return value


def _as_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(value)

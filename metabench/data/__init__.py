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
from metabench.values import convert, number_literal

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


def option_value(dataset: str, key: str, value: Any, default: Any) -> Any:
    """A data set option read against its parameter's default (:mod:`metabench.values`):
    true/false for a flag, a number as TOML reads it for a number (text that is not a number
    stays text: the factory checks values such as ``image_size="keep"``); other values as
    they are."""
    if isinstance(default, bool):
        return convert(f"data set '{dataset}' option {key}", value, bool)
    if isinstance(default, int | float) and isinstance(value, str):
        number = number_literal(value)
        return value if number is None else number
    return value


def _coerce(dataset: str, key: str, value: Any, parameter: inspect.Parameter | None) -> Any:
    """A value converted to the type of the parameter's default."""
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return value
    value = option_value(dataset, key, value, parameter.default)
    default = parameter.default
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        return int(value) if value.is_integer() else value
    return value


def option_defaults(name: str) -> dict[str, Any]:
    """The default of each option of the data set registered as ``name`` (those it has)."""
    from metabench import registry

    parameters = _parameters(registry.get("dataset", name).factory)
    return {key: p.default for key, p in parameters.items()
            if p.default is not inspect.Parameter.empty}

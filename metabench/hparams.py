"""Hyperparameters: frozen dataclasses with defaults, overridden from the CLI or a TOML file."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from metabench.errors import MetabenchError
from metabench.values import convert, exact


def parse_assignments(pairs: list[str], flag: str = "--set") -> dict[str, dict[str, str]]:
    """Parse ``--set algo.key=value`` strings into ``{algo: {key: value}}`` (also
    ``--dataset-option dataset.key=value``)."""
    parsed: dict[str, dict[str, str]] = {}
    example = ("ALGORITHM.NAME=VALUE (e.g. maml.inner_lr=0.1)" if flag == "--set"
               else "DATASET.NAME=VALUE (e.g. omniglot.rotations=true)")
    for pair in pairs:
        target, sep, value = pair.partition("=")
        algorithm, dot, key = target.partition(".")
        if not sep or not dot or not algorithm or not key:
            raise MetabenchError(f"{flag} '{pair}' is not of the form {example}")
        parsed.setdefault(algorithm.strip(), {})[key.strip()] = value.strip()
    return parsed


def apply_overrides(owner: str, defaults: Any, overrides: Mapping[str, Any]) -> Any:
    """Return ``defaults`` with ``overrides`` applied, each converted to the field's type."""
    if not overrides:
        return defaults
    hints = field_types(owner, defaults, overrides)
    changes = {key: coerce(f"{owner}.{key}", value, hints[key]) for key, value in overrides.items()}
    return dataclasses.replace(defaults, **changes)


def typed_overrides(owner: str, defaults: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` read as the types of ``defaults``' fields (text from ``--set`` as TOML
    reads it, see :mod:`metabench.values`): a name or a type that is wrong fails here."""
    if not overrides:
        return {}
    hints = field_types(owner, defaults, overrides)
    return {key: convert(f"{owner}.{key}", value, hints[key]) for key, value in overrides.items()}


def field_types(owner: str, defaults: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The type of each field of the hyperparameter dataclass ``defaults``; an override that
    names no field fails in one line."""
    if defaults is None or not dataclasses.is_dataclass(defaults) or isinstance(defaults, type):
        raise MetabenchError(f"{owner} has no hyperparameters to set ({', '.join(overrides)} given)")
    fields = {f.name for f in dataclasses.fields(defaults)}
    for key in overrides:
        if key not in fields:
            raise MetabenchError(
                f"{owner} has no hyperparameter '{key}'; known: {', '.join(sorted(fields))}"
            )
    hints = typing.get_type_hints(type(defaults))
    return {name: hints[name] for name in fields}


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert ``value`` (often a string) to ``annotation``; fail naming the value and type."""
    return exact(name, value, annotation)


def as_dict(hparams: Any) -> dict[str, Any]:
    """The hyperparameters as a plain dict (empty when there are none)."""
    if dataclasses.is_dataclass(hparams) and not isinstance(hparams, type):
        return dataclasses.asdict(hparams)
    return {}

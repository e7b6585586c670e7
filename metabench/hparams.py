"""Hyperparameters: frozen dataclasses with defaults, overridden from the CLI or a TOML file."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any

from metabench.errors import MetabenchError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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
    if defaults is None or not dataclasses.is_dataclass(defaults) or isinstance(defaults, type):
        raise MetabenchError(f"{owner} has no hyperparameters to set ({', '.join(overrides)} given)")
    fields = {f.name: f for f in dataclasses.fields(defaults)}
    hints = typing.get_type_hints(type(defaults))
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            raise MetabenchError(
                f"{owner} has no hyperparameter '{key}'; known: {', '.join(sorted(fields))}"
            )
        changes[key] = coerce(f"{owner}.{key}", value, hints[key])
    return dataclasses.replace(defaults, **changes)


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert ``value`` (often a string) to ``annotation``; fail naming the value and type."""
    target = _plain_type(annotation)
    if target is bool:
        return _to_bool(name, value)
    if target in (int, float, str):
        if isinstance(value, bool) or (target is int and isinstance(value, float)):
            raise _type_error(name, value, target)
        try:
            converted = target(value)
        except (TypeError, ValueError, OverflowError):
            raise _type_error(name, value, target) from None
        if target is float and not math.isfinite(converted):
            raise MetabenchError(f"{name}={value!r} is not a finite number (NaN and infinity "
                                 "are not allowed)")
        if target is int and not -(2**63) <= converted < 2**63:
            raise MetabenchError(f"{name}={value!r} is out of range; expected a 64-bit integer")
        return converted
    return value


def as_dict(hparams: Any) -> dict[str, Any]:
    """The hyperparameters as a plain dict (empty when there are none)."""
    if dataclasses.is_dataclass(hparams) and not isinstance(hparams, type):
        return dataclasses.asdict(hparams)
    return {}


def _plain_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is not None and len(args) == 1 else annotation


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise _type_error(name, value, bool)


def _type_error(name: str, value: Any, target: type) -> MetabenchError:
    return MetabenchError(f"{name}={value!r} is not a valid {target.__name__}")

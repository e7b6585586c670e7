"""The one converter of option values: text from a flag (``--set maml.inner_lr=.1``) or a
value from a TOML file, read as the type a field expects.

Text is read the way TOML reads a literal, so a flag and a TOML file give the same value:
``"0.1"``, ``".1"`` and TOML ``0.1`` are the float ``0.1``; ``"5"`` and TOML ``5`` the
integer ``5``. A whole number where a float is expected stays a whole number here (TOML
``inner_lr = 1`` has always been recorded as ``1``, so stored fingerprints hold); the code
that uses the value converts it (:func:`exact`).
"""

from __future__ import annotations

import math
import numbers
import re
import typing
from typing import Any

from metabench.errors import MetabenchError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
INTEGER = re.compile(r"^[+-]?\d+$")
INT64 = (-(2**63), 2**63 - 1)
PLAIN_TYPES = (bool, int, float, str)


def plain_type(annotation: Any) -> Any:
    """``float`` for ``float`` or ``float | None``; the annotation itself otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is not None and len(args) == 1 else annotation


def convert(name: str, value: Any, target: Any) -> Any:
    """``value`` as ``target`` (``bool``, ``int``, ``float`` or ``str``, or an annotation of
    one, optional or not); other targets take the value as it is. A value that is not of
    the type fails in one line naming ``name``, the value and the type."""
    target = plain_type(target)
    if target is bool:
        return as_bool(name, value)
    if target is int:
        return _as_int(name, value)
    if target is float:
        return _as_number(name, value)
    if target is str:
        if not isinstance(value, str):
            raise type_error(name, value, str)
        return value
    return value


def exact(name: str, value: Any, target: Any) -> Any:
    """:func:`convert`, and a whole number where a float is expected as a float: the value
    code runs with."""
    converted = convert(name, value, target)
    if plain_type(target) is float and isinstance(converted, int):
        return float(converted)
    return converted


def as_bool(name: str, value: Any) -> bool:
    """``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0`` as text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise type_error(name, value, bool)


def number_literal(text: str) -> int | float | None:
    """A number written as text, as TOML reads it (``5`` an int, ``.1`` or ``1e-3`` a float);
    ``None`` when the text is not a number."""
    text = text.strip()
    if INTEGER.match(text.replace("_", "")):
        return int(text.replace("_", ""))
    try:
        return float(text)
    except ValueError:
        return None


def type_error(name: str, value: Any, target: type) -> MetabenchError:
    """The one-line error of a value of the wrong type."""
    return MetabenchError(f"{name}={value!r} is not a valid {target.__name__}")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, str) and INTEGER.match(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise type_error(name, value, int)
    if not INT64[0] <= int(value) <= INT64[1]:
        raise MetabenchError(f"{name}={value!r} is out of range; expected a 64-bit integer")
    return int(value)


def _as_number(name: str, value: Any) -> int | float:
    if isinstance(value, str):
        parsed = number_literal(value)
        if parsed is None:
            raise type_error(name, value, float)
        value = parsed
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(name, value, float)
    if isinstance(value, numbers.Integral):
        return _as_int(name, value)
    if not math.isfinite(value):
        raise MetabenchError(f"{name}={value!r} is not a finite number (NaN and infinity "
                             "are not allowed)")
    return float(value)

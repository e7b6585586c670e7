"""The command line that reruns a stored run, written from the one definition of the
options (:data:`metabench.options.OPTIONS`): ``metabench compare ...``, or ``metabench
reproduce NAME ...`` for a run of a paper preset. Every option of the stored configuration
comes back when the command is read (a test checks the round trip), except ``out``: a rerun
writes where it is asked to.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from metabench.config import Config, make_config
from metabench.errors import MetabenchError
from metabench.options import (
    COMPARE,
    LIST,
    OPTIONAL,
    PAIRS,
    REPRODUCE,
    SWITCH,
    Option,
    options_of,
)
from metabench.presets import get_preset, settings_of

#: Options no rerun command writes: the results folder is the rerun's own.
NOT_WRITTEN = ("out",)


def compare_command(config: Mapping[str, Any]) -> str:
    """The command line that reruns a stored configuration: ``metabench compare``, or
    ``metabench reproduce`` for a run of a paper preset."""
    if config.get("preset"):
        return reproduce_command(config)
    ran = make_config(config)
    words = [*_program(ran), "compare"]
    for option in _in_order(options_of(COMPARE)):
        value = _value(option, ran)
        if option.always or value != option.default:
            words += option_words(option, value)
    return shlex.join(words)


def reproduce_command(config: Mapping[str, Any]) -> str:
    """The ``metabench reproduce`` command line that reruns a stored preset run."""
    ran = make_config(config)
    name = str(ran.preset)
    words = [*_program(ran), "reproduce", name]
    if ran.scale != 1.0:
        words += ["--scale", f"{ran.scale:g}"]
    try:
        preset = get_preset(name)
        base: Config | None = preset.config(name, ran.scale)
    except MetabenchError:  # the preset's plugin is not loaded here
        base = None
    if base and any(tuple(getattr(ran, key)) != tuple(getattr(base, key))
                    for key in ("algorithms", "ways", "shots")):
        only = f"{','.join(ran.algorithms)}/{','.join(settings_of(ran))}"
        words += ["--only", only]
        base = preset.config(name, ran.scale, only)
    for option in _in_order(options_of(REPRODUCE)):
        value = _value(option, ran)
        given = _value(option, base) if base else option.default
        if option.kind == PAIRS and base:
            value = _changed_entries(value, given)
            given = {}
        if value != given:
            words += option_words(option, value)
    return shlex.join(words)


def option_words(option: Option, value: Any) -> list[str]:
    """``option`` set to ``value`` (as :meth:`Config.to_dict` holds it) on a command line."""
    if value is None or value == "" or value == [] or value == {}:
        return []
    if option.kind == SWITCH:
        name = option.flag.partition("/")[0]
        return [name] if value else [f"--no-{name.removeprefix('--')}"]
    if option.kind == PAIRS:
        return [word for pair in _pairs(option.name, value) for word in (option.flag, pair)]
    if option.kind == LIST:
        text = ",".join(_text(item) for item in value)
        if option.name in ("ways", "shots") and text == "0":
            text = "any"  # the any-way any-shot sampler
        return [option.flag, text]
    return [option.flag, _text(value)]


def _value(option: Option, config: Config) -> Any:
    data = config.to_dict()
    if option.kind == OPTIONAL:  # --tuned: the tuning the run used
        return (data.get("tuning") or {}).get("id") or data[option.name]
    return data[option.name]


def _pairs(name: str, value: Mapping[str, Any]) -> list[str]:
    if name in ("hparams", "dataset_options"):
        return [f"{owner}.{key}={_text(item)}" for owner, table in sorted(value.items())
                for key, item in sorted(table.items())]
    return [f"{key}={_text(item)}" for key, item in sorted(value.items())]


def _changed_entries(value: Any, base: Any) -> Any:
    """The entries of a table (or a table of tables) that differ from ``base``'s."""
    changed: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            inner = {k: v for k, v in item.items() if (base.get(key) or {}).get(k) != v}
            if inner:
                changed[key] = inner
        elif base.get(key) != item:
            changed[key] = item
    return changed


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _program(config: Config) -> list[str]:
    words = ["metabench"]
    for module in config.plugins:
        words += ["--plugin", module]
    return words


def _in_order(options: tuple[Option, ...]) -> list[Option]:
    """Values first, then the repeatable ``KEY=VALUE`` flags, then switches (a command
    reads best with its settings up front)."""
    rank = {PAIRS: 1, OPTIONAL: 1, SWITCH: 2}
    return sorted((o for o in options if o.name not in NOT_WRITTEN),
                  key=lambda o: rank.get(o.kind, 0))

"""The one definition of the comparison's options: the commands' flags, ``compare()``'s
signature and the rerun command are built from it; every option of a stored configuration
survives the round trip config -> rerun command -> config."""

from __future__ import annotations

import dataclasses
import inspect
import shlex
from typing import Any

import click
import pytest
from test_compare_plugin import compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench.cli_compare import compare_command
from metabench.cli_reproduce import reproduce_command
from metabench.cli_tune import tune_command
from metabench.config import Config, make_config
from metabench.options import (
    BY_NAME,
    COMPARE,
    NOT_FLAGS,
    OPTIONS,
    REPRODUCE,
    from_flags,
    options_of,
)
from metabench.reproduction import preset_config
from metabench.rerun import NOT_WRITTEN
from metabench.rerun import compare_command as rerun_command
from metabench.session import configure
from metabench.typed import typed_config

pytestmark = pytest.mark.usefixtures("compare_plugin")
COMMANDS = {"compare": compare_command, "tune": tune_command, "reproduce": reproduce_command}
# compare()'s own parameters that are not options of a comparison.
API_ONLY = {"config", "resume", "retry_failed", "progress", "options"}

EVERY_OPTION = {  # every option at a value other than its default
    "algorithms": "maml,mymaml", "variants": ["mymaml=maml"], "datasets": "glyphs",
    "test_dataset": "omniglot", "dataset_options": {"omniglot": {"rotations": True}},
    "ways": [5, 20], "shots": [1], "queries": 7, "episodes": 33, "seeds": [1, 2],
    "budget": "steps:10", "budgets": {"20w": "steps:20"}, "backbone": "conv4",
    "hparams": {"maml": {"inner_lr": 0.3, "train_steps": 2},
                "mymaml@20w": {"first_order": True}},
    "val_episodes": 9, "val_points": 3, "checkpoint": "last", "curve_steps": 2,
    "tuned": "tune-x", "tuning": {"id": "tune-x", "selected": {}},
    "confidence": 0.9, "alpha": 0.1, "margin": 0.01, "data_root": "/data d",
    "cache_dir": "/cache", "download": True, "device": "cpu", "out": "elsewhere",
    "backend": "ray", "address": "auto", "cpus_per_cell": 2, "gpus_per_cell": 0.5,
    "max_retries": 5, "jobs": 3, "plugins": ["test_compare_plugin"],
}
ANY_SHOT = {"algorithms": "protonet", "ways": "any", "shots": "any",
            "sampler_options": ["max_ways=20", "min_log_weight=-0.5"]}


def test_every_option_is_a_config_field_and_every_field_an_option():
    fields = {f.name for f in dataclasses.fields(Config)}
    assert {option.name for option in OPTIONS} | set(NOT_FLAGS) == fields
    assert not {option.name for option in OPTIONS} & set(NOT_FLAGS)
    assert all(option.default == Config().to_dict()[option.name] for option in OPTIONS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_commands_take_the_flags_of_the_definition(name):
    params = {p.name: p for p in COMMANDS[name].params if isinstance(p, click.Option)}
    taken = {p for p in params if p in BY_NAME}
    assert taken == {option.name for option in options_of(name)}
    for option in options_of(name):
        flags = [f for f in option.flag.split("/") if f] + list(option.flags[1:])
        assert set(flags) <= set(params[option.name].opts) | set(params[option.name].secondary_opts)


def test_reproduce_takes_every_runtime_option_of_compare():
    def runtime(command: click.Command) -> set[str]:
        return {p.name for p in command.params
                if p.name in BY_NAME and BY_NAME[p.name].runtime}
    assert runtime(compare_command) - {"confidence", "alpha", "margin"} <= runtime(reproduce_command)
    context = reproduce_command.make_context(
        "reproduce", ["snell2017-omniglot", "--max-retries", "3", "--gpus-per-cell", "0.5",
                      "--cache-dir", "/c", "--address", "auto", "--backend", "ray"])
    assert context.params["max_retries"] == 3 and context.params["backend"] == "ray"


def test_compare_signature_follows_the_definition():
    signature = inspect.signature(metabench.compare)
    named = set(signature.parameters) - API_ONLY
    compare_options = {option.name for option in options_of(COMPARE)}
    assert named <= compare_options, named - compare_options
    doc = inspect.getdoc(metabench.compare) or ""
    missing = [name for name in compare_options - named if f"``{name}``" not in doc]
    assert not missing, f"compare() neither names nor documents {missing}"
    assert signature.parameters["options"].kind is inspect.Parameter.VAR_KEYWORD


def _read_back(command: str, name: str) -> tuple[list[str], dict[str, Any]]:
    """A rerun command parsed as the CLI parses it: the plugins and the command's params."""
    words = shlex.split(command)
    assert words[0] == "metabench"
    plugins, rest = [], words[1:]
    while rest[0] == "--plugin":
        plugins.append(rest[1])
        rest = rest[2:]
    assert rest[0] == name
    context = COMMANDS[name].make_context(name, rest[1:])
    return plugins, context.params


def _compared(config: Config) -> dict[str, Any]:
    data = typed_config(config).to_dict()
    for name in NOT_WRITTEN:
        del data[name]
    return data


@pytest.mark.parametrize("options", [EVERY_OPTION, ANY_SHOT, {}], ids=["every", "any", "defaults"])
def test_every_option_survives_the_rerun_command(options):
    stored = make_config(options)
    command = rerun_command(stored.to_dict())
    plugins, params = _read_back(command, "compare")
    rebuilt = configure({**from_flags("compare", params), "plugins": plugins or None})
    expected = _compared(stored)
    tuning = expected.pop("tuning")
    got = _compared(rebuilt)
    assert got.pop("tuning") == {} and got["tuned"] == (tuning.get("id") or stored.tuned)
    assert got == expected
    assert set(expected) == {f.name for f in dataclasses.fields(Config)} - {"out", "tuning"}


@pytest.mark.parametrize(("name", "scale", "only", "options"), [
    ("snell2017-omniglot", 0.05, None, {}),
    ("snell2017-omniglot", 0.5, "protonet/5w1s", {
        "hparams": ["protonet.lr=0.002"], "dataset_options": ["omniglot.rotations=false"],
        "test_dataset": "glyphs", "budget": "steps:40", "episodes": 30, "seeds": "3,4",
        "val_episodes": 5, "val_points": 2, "data_root": "/d", "cache_dir": "/c",
        "download": True, "device": "cpu", "backend": "ray", "address": "auto",
        "cpus_per_cell": 2, "gpus_per_cell": 0.25, "max_retries": 4, "jobs": "auto"}),
])
def test_every_option_of_a_preset_run_survives_the_reproduce_command(name, scale, only, options):
    stored = preset_config(name, scale, only, options)
    command = rerun_command(stored.to_dict())
    _, params = _read_back(command, "reproduce")
    assert params["name"] == name and params["scale"] == scale
    flags = {k: v for k, v in from_flags(REPRODUCE, params).items() if v is not None}
    rebuilt = preset_config(name, params["scale"], params["only"], flags)
    assert _compared(rebuilt) == _compared(stored)

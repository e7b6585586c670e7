"""The plugin system: registration, attribution, loading, and the errors a user can act on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import metabench
from metabench import registry
from metabench.errors import MetabenchError
from metabench.plugins import get_plugin_manager, load_plugins

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "metabench-example-plugin"


class FixtureAlgorithmPlugin:
    """A tiny plugin registering one algorithm and one data set."""

    @metabench.hookimpl
    def register_algorithms(self, register):
        register("fixture-algo", object, task_types={"classification"},
                 description="registered by a test fixture")


@pytest.fixture
def fixture_plugin():
    manager = get_plugin_manager()
    plugin = FixtureAlgorithmPlugin()
    manager.register(plugin, name="fixture-plugin")
    yield plugin
    if manager.is_registered(plugin):
        manager.unregister(plugin)


def algorithm_names(run_cli) -> dict[str, str]:
    result = run_cli("plugins", "--json")
    assert result.code == 0, result.err
    return {a["name"]: a["plugin"] for a in json.loads(result.out)["algorithms"]}


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_fixture_plugin_is_listed_then_gone(run_cli, fixture_plugin):
    assert algorithm_names(run_cli)["fixture-algo"] == "fixture-plugin"
    get_plugin_manager().unregister(fixture_plugin)
    assert "fixture-algo" not in algorithm_names(run_cli)


def test_fixture_plugin_gone_after_fixture(run_cli):
    assert "fixture-algo" not in algorithm_names(run_cli)


def test_builtins_are_registered_with_their_plugin():
    algorithms = registry.get_algorithms()
    assert algorithms["protonet"].plugin == "protonet"
    assert "conv4" in registry.get_backbones()
    assert "sinusoid" in registry.get_datasets()
    assert {"csv", "md", "json", "latex"} <= set(registry.get_reporters())


def test_plugins_table_lists_every_kind(run_cli):
    result = run_cli("plugins")
    assert result.code == 0
    for word in ("algorithm", "dataset", "backbone", "reporter", "protonet", "conv4"):
        assert word in result.out


def test_example_plugin_with_plugin_flag_lists_its_algorithm():
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE)}
    env.pop("METABENCH_PLUGINS", None)
    command = [sys.executable, "-m", "metabench", "--plugin", "metabench_example.cosine",
               "plugins", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {a["name"]: a["plugin"] for a in json.loads(done.stdout)["algorithms"]}
    assert listed["cosine-protonet"] == "metabench_example.cosine"


def test_env_var_names_plugin_modules(run_cli, monkeypatch, tmp_path):
    write_module(tmp_path, "envplugin", """
        import metabench

        @metabench.hookimpl
        def register_algorithms(register):
            register("from-env", object, description="named by METABENCH_PLUGINS")
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("METABENCH_PLUGINS", "envplugin")
    assert algorithm_names(run_cli)["from-env"] == "envplugin"


def test_loading_a_module_twice_is_idempotent(monkeypatch, tmp_path):
    write_module(tmp_path, "twice", """
        import metabench

        @metabench.hookimpl
        def register_algorithms(register):
            register("twice", object)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins(["twice"])
    load_plugins(["twice", "twice"])
    assert "twice" in registry.get_algorithms()


def test_same_name_from_two_plugins_names_both(run_cli, monkeypatch, tmp_path):
    for module in ("first_dup", "second_dup"):
        write_module(tmp_path, module, """
            import metabench

            @metabench.hookimpl
            def register_algorithms(register):
                register("dup", object)
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("--plugin", "first_dup", "--plugin", "second_dup", "plugins")
    assert result.code == 2
    assert "'dup' is registered twice" in result.err
    assert "first_dup" in result.err and "second_dup" in result.err
    assert_one_line_error(result.err)


def test_unknown_name_lists_known_names_and_closest_match():
    with pytest.raises(MetabenchError) as caught:
        registry.get("algorithm", "protonett")
    message = str(caught.value)
    assert "unknown algorithm 'protonett'" in message
    assert "did you mean 'protonet'?" in message
    assert "known algorithms:" in message and "protonet" in message
    with pytest.raises(MetabenchError, match=r"unknown dataset 'sinusiod'.*'sinusoid'"):
        registry.get("dataset", "sinusiod")
    with pytest.raises(MetabenchError, match=r"^unknown algorithm 'zzz'; known algorithms: "
                                             r"(.*, )?fomaml, .*protonet"):
        registry.get("algorithm", "zzz")


def test_plugin_module_that_does_not_import(run_cli, monkeypatch, tmp_path):
    write_module(tmp_path, "broken_plugin", "import numpy_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("--plugin", "broken_plugin", "plugins")
    assert result.code == 2
    assert "could not import plugin module 'broken_plugin'" in result.err
    assert "ModuleNotFoundError" in result.err and "numpy_that_does_not_exist" in result.err
    assert_one_line_error(result.err)


def test_missing_plugin_module(run_cli):
    result = run_cli("--plugin", "no.such.module", "plugins")
    assert result.code == 2
    assert "could not import plugin module 'no.such.module'" in result.err


def test_misspelt_hook_name(run_cli, monkeypatch, tmp_path):
    write_module(tmp_path, "typo_plugin", """
        import metabench

        @metabench.hookimpl
        def register_algorithm(register):
            register("typo", object)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("--plugin", "typo_plugin", "plugins")
    assert result.code == 2
    assert "typo_plugin" in result.err and "register_algorithm" in result.err
    assert "unknown hook" in result.err
    assert_one_line_error(result.err)


def test_register_commands_adds_a_command(run_cli, monkeypatch, tmp_path):
    write_module(tmp_path, "cmd_plugin", """
        import click
        import metabench

        @metabench.hookimpl
        def register_commands(cli):
            @cli.command("greet")
            @click.argument("name")
            def greet(name):
                click.echo(f"hello {name}")
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("--plugin", "cmd_plugin", "greet", "world")
    assert result.code == 0, result.err
    assert result.out.strip() == "hello world"


def test_version_and_help(run_cli):
    result = run_cli("--version")
    assert result.code == 0 and metabench.__version__ in result.out
    result = run_cli("--help")
    assert result.code == 0 and "plugins" in result.out


def assert_one_line_error(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err


def test_lazy_loading_reads_which_hooks_a_module_may_implement(tmp_path, monkeypatch):
    """A pending plugin is imported for a hook its source names, for every hook when its
    source cannot be read or star-imports its hooks, and not otherwise."""
    from metabench.plugins import _Pending

    def pending(source: str | None) -> _Pending:
        return _Pending("p", lambda: None, source)

    names_it = pending("@hookimpl\ndef register_plots(register): ...\n")
    assert names_it.may_implement("register_plots")
    assert not names_it.may_implement("register_algorithms")
    assert pending(None).may_implement("register_algorithms")
    assert pending("from mypkg.hooks import *\n").may_implement("register_algorithms")

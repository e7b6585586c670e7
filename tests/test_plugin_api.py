"""What docs/plugins.md promises a plugin author: the built-in plugins use only public,
documented API; the documented command runs a plugin module; the helpers' example trains
and tests."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from test_docs import DOC, python_blocks
from test_plugins import assert_one_line_error

import metabench
from metabench import algorithm_helpers
from metabench.plugins import get_plugin_manager

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
HELPERS_SECTION = re.search(r"^## Helpers for algorithms\n(.*?)(?=^## )", DOC.read_text(),
                            flags=re.S | re.M)


def helpers_section() -> str:
    assert HELPERS_SECTION, "docs/plugins.md has no '## Helpers for algorithms' section"
    return HELPERS_SECTION.group(1)


def imports_of(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from MODULE import NAME`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


@pytest.mark.parametrize("path", sorted(PLUGINS.glob("*.py")), ids=lambda path: path.name)
def test_built_in_plugins_import_only_public_documented_api(path):
    section = helpers_section()
    for module, name in imports_of(path):
        parts = [*module.split("."), name]
        assert not any(part.startswith("_") for part in parts if part != "__future__"), \
            f"{path.name} imports a private name: {module} {name}"
        if not name:  # import MODULE: metabench itself, or another package
            assert not module.startswith("metabench."), f"{path.name}: import {module}"
        elif module == "metabench":
            assert name in metabench.__all__, f"{path.name}: metabench.{name} is not exported"
        elif module.startswith("metabench."):
            assert f"`{module}" in section or module == "metabench.algorithm_helpers", \
                f"{path.name} imports from {module}, which docs/plugins.md does not list"
            assert re.search(rf"`({re.escape(module)}\.)?{name}\b", section), \
                f"{path.name} imports {module}.{name}, which docs/plugins.md does not list"


def public_helpers() -> list[str]:
    return [name for name, value in vars(algorithm_helpers).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == algorithm_helpers.__name__]


@pytest.mark.parametrize("name", public_helpers())
def test_every_public_helper_is_documented(name):
    assert f"`{name}" in helpers_section(), f"docs/plugins.md does not list {name}"
    assert inspect.getdoc(getattr(algorithm_helpers, name)), f"{name} has no docstring"


def test_the_documented_constants_are_the_helpers_values():
    section = helpers_section()
    for constant in ("TRANSDUCTIVE", "NON_TRANSDUCTIVE", "RUNNING_AVERAGES", "NO_BATCH_NORM",
                     "PER_QUERY_IMAGES", "HEAD_SALT"):
        assert constant in section and hasattr(algorithm_helpers, constant)


def test_no_plugin_module_is_private():
    assert not [path.name for path in PLUGINS.glob("_*.py") if path.name != "__init__.py"]


def documented_command() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    (line,) = [line for block in blocks for line in block.splitlines()
               if "--plugin nearest_mean" in line]
    return line.split()


def console_script() -> Path:
    script = Path(sys.executable).parent / "metabench"
    if not script.exists():
        pytest.skip("no metabench console script beside this Python")
    return script


@pytest.mark.timeout(300)
def test_the_documented_command_runs_a_plugin_module_from_the_current_folder(tmp_path):
    (nearest_mean,) = [block for block in python_blocks(DOC.read_text()) if "class NearestMean" in block]
    (tmp_path / "nearest_mean.py").write_text(nearest_mean)
    words = documented_command()
    assert words[:2] == ["PYTHONPATH=.", "metabench"]
    quick = ["--datasets", "glyphs", "--shots", "1", "--budget", "episodes:2", "--episodes", "3",
             "--val-episodes", "2", "--val-points", "1", "--out", "out", "--no-report",
             "--no-progress"]  # the last value of a flag wins
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "METABENCH_PLUGINS")}
    command = [str(console_script()), *words[2:], *quick]
    ran = subprocess.run(command, cwd=tmp_path, env={**env, "PYTHONPATH": ".",
                                                     "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=280)
    assert ran.returncode == 0, ran.stderr
    assert "nearest-mean" in ran.stdout and "protonet" in ran.stdout
    missing = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2
    assert_one_line_error(missing.stderr)
    assert "could not import plugin module 'nearest_mean': ModuleNotFoundError" in missing.stderr


@pytest.mark.timeout(300)
def test_the_helpers_example_trains_and_tests(tmp_path):
    (source,) = [block for block in python_blocks(DOC.read_text()) if "class FineTune" in block]
    module = types.ModuleType("finetune_example")
    sys.modules[module.__name__] = module
    exec(compile(source, "docs/plugins.md[finetune]", "exec"), module.__dict__)
    get_plugin_manager().register(module, name=module.__name__)
    try:
        frame = metabench.compare(algorithms="finetune", datasets="glyphs", shots=1, episodes=3,
                                  budget="episodes:2", val_episodes=2, val_points=2,
                                  out=tmp_path, progress=False)
    finally:
        get_plugin_manager().unregister(module)
        del sys.modules[module.__name__]
    cells = metabench.load_cells(tmp_path)
    assert list(cells["status"]) == ["ok"], list(cells["reason"])
    assert len(frame) == 3 and frame["accuracy"].between(0, 1).all()
    shutil.rmtree(tmp_path / "out", ignore_errors=True)

"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) pass, and
every module of metabench has a place in the layers contract, so a new module is placed before
it is imported from anywhere."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def contract(contract_id: str) -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == contract_id)


def layer_modules() -> list[str]:
    return [name.strip() for layer in contract("layers")["layers"]
            for name in layer.replace("|", ":").split(":")]


def test_import_contracts_are_kept():
    """A lower layer importing a higher one (outside ``if TYPE_CHECKING:``) breaks the
    ``layers`` contract; an algorithm plugin importing the store, a backend, the reports or
    the CLI breaks the ``plugins`` contract. ``lint-imports`` names the import chain."""
    done = subprocess.run([sys.executable, "-c", LINT], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_every_module_has_a_layer():
    graph = grimp.build_graph("metabench")
    placed = set(layer_modules())
    top = {".".join(name.split(".")[:2]) for name in graph.modules if name != "metabench"}
    assert sorted(top - placed) == [], "add the module to a layer in pyproject.toml"
    assert sorted(placed - top) == [], "a layer names a module that does not exist"

"""Package discovery (the rest of the metadata is in pyproject.toml).

Every package under ``metabench/`` is found by setuptools, every file there that is not
Python ships as package data (templates, split lists, ``py.typed``), and ``plugins/`` ships
as ``metabench_plugins`` with any subpackage it grows. ``.ci/run`` checks the wheel.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_namespace_packages, setup

_SKIP = {".py", ".pyc", ".pyo"}


def data_files(root: str) -> list[str]:
    """Every non-Python file under ``root``, relative to it (caches excluded)."""
    base = Path(root)
    return sorted(str(p.relative_to(base)) for p in base.rglob("*")
                  if p.is_file() and p.suffix not in _SKIP and "__pycache__" not in p.parts)


def packages() -> list[str]:
    """``metabench`` and all its subpackages, and ``metabench_plugins`` with its own."""
    core = find_namespace_packages(include=["metabench", "metabench.*"], exclude=["*.__pycache__"])
    plugins = find_namespace_packages("plugins", exclude=["__pycache__", "*.__pycache__"])
    return [*core, "metabench_plugins", *(f"metabench_plugins.{name}" for name in plugins)]


setup(
    packages=packages(),
    package_dir={"metabench_plugins": "plugins"},
    package_data={"metabench": data_files("metabench"), "metabench_plugins": data_files("plugins")},
)

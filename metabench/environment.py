"""The environment record stored with every run: versions, plugins, device, CPU, git commit."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import torch

from metabench.plugins import hook_caller, plugin_modules
from metabench.profiling import cpu_name, device_name
from metabench.version import __version__

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def machine_info(device: torch.device) -> dict[str, Any]:
    """Everything needed to reproduce a run's numbers; plugins add to it via a hook."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "metabench": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "git_commit": git_commit(PROJECT_ROOT),
        "plugins": plugin_versions(),
    }
    hook_caller("update_machine_info")(info=info)
    return info


def git_commit(root: Path) -> str | None:
    """The commit checked out in ``root`` (``+dirty`` when changed), or None outside git."""
    if not (root / ".git").exists():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return result.stdout.strip()


def plugin_versions() -> dict[str, str]:
    """Each plugin by name (loaded or not: none is imported for this), with the version of
    the distribution that ships it."""
    return {name: _version_of(module) for name, module in sorted(plugin_modules().items())}


def _version_of(module_name: str) -> str:
    top = module_name.split(".")[0]
    if top in ("metabench", "metabench_plugins"):  # both ship in the metabench distribution
        return __version__
    for dist in [top, *_distributions().get(top, [])]:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return str(getattr(sys.modules.get(module_name), "__version__", "unknown"))


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())

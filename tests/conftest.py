"""Shared fixtures: a fresh plugin manager per test, small data sets, the shared data folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from metabench.cli import main
from metabench.data.synthetic import SyntheticImages
from metabench.plugins import reset_plugin_manager

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def fresh_plugin_manager():
    """Each test starts and ends with no plugins but the installed ones."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny_dataset() -> SyntheticImages:
    """A small learnable classification data set built in memory."""
    return SyntheticImages(classes=(20, 8, 10), examples=20)


@pytest.fixture
def omniglot_root() -> Path:
    """The real Omniglot zips of ../shared/datasets/omniglot; skips where absent."""
    root = SHARED_DATASETS / "omniglot"
    if not (root / "images_background.zip").exists():
        pytest.skip(f"real Omniglot not available: {root} has no images_background.zip")
    return root


@dataclass
class CliResult:
    """What a user sees: exit code, stdout and stderr."""

    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``metabench ARGS`` in this process and capture what a user would see."""

    def run(*args: str) -> CliResult:
        code = 0
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run

"""The wheel and sdist ship every module and data file, and the installed wheel works
(scripts/check_package.py, also run by .ci/run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_holds_the_tree_and_runs_installed() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_package.py")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[package] ok:" in result.stdout

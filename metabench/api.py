"""The Python API a notebook calls: ``compare()`` runs a comparison; reading results back
lives in :mod:`metabench.results`, the leaderboard in :mod:`metabench.report.leaderboard`.

The ``metabench compare`` command is a thin layer over :func:`metabench.session.run_comparison`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from metabench.plan import LATEST
from metabench.session import run_comparison


def compare(
    algorithms: Sequence[str] | str | None = None,
    datasets: Sequence[str] | str | None = None,
    ways: Sequence[int] | int | None = None,
    shots: Sequence[int] | int | None = None,
    queries: int | None = None,
    episodes: int | None = None,
    seeds: Sequence[int] | int | None = None,
    budget: str | None = None,
    backbone: str | None = None,
    hparams: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
    device: str | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    resume: str | bool | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Run a comparison (the ``metabench compare`` command) and return its results frame.

    Options mirror the command's flags; ``hparams`` takes ``["maml.inner_lr=0.1"]`` or
    ``{"maml": {"inner_lr": 0.1}}``; ``config`` names a TOML file the other options
    override; ``resume`` is a run id or ``True`` (the latest run with the same config).
    Further options (``val_episodes``, ``val_points``, ``confidence``, ``alpha``, ``margin``,
    ``data_root``, ``cache_dir``, ``download``, ``plugins``) pass through. The frame has one
    row per test episode; ``frame.attrs`` holds ``run``, ``store`` and ``failed`` (failed
    cell keys). Ctrl-C or SIGTERM raises :class:`metabench.RunInterrupted` with the run
    marked interrupted; ``resume=True`` finishes it.
    """
    given = {
        "algorithms": _listish(algorithms), "datasets": _listish(datasets),
        "ways": _listish(ways), "shots": _listish(shots), "queries": queries,
        "episodes": episodes, "seeds": _listish(seeds), "budget": budget,
        "backbone": backbone, "hparams": hparams, "device": device,
        "out": str(out) if out is not None else None, **options,
    }
    resume_arg = LATEST if resume is True else (resume or None)
    outcome = run_comparison(given, config_file=config, resume=resume_arg,
                             retry_failed=retry_failed, progress=progress)
    frame = outcome.episodes
    frame.attrs.update(run=outcome.run, store=str(outcome.store), failed=outcome.failed)
    return frame


def _listish(value: Any) -> Any:
    return [value] if isinstance(value, int) else value

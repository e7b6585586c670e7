"""Leaderboards as files: the table a reader pastes, with what reproduces it written under it.

:func:`leaderboard_frame` turns :class:`ReportData` into the published table (numbers kept
as numbers, plus a formatted ``score``); its ``attrs["notes"]`` carry the notes, the
legend, each run's protocol and environment and the exact command that reruns it, which
the Markdown and HTML formats print under the table. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from metabench import registry
from metabench.errors import unknown_name_error
from metabench.files import atomic_path
from metabench.reports.data import ReportData
from metabench.reports.leaderboard import build_report_data, legend
from metabench.reports.terminal import score_text
from metabench.rerun import compare_command
from metabench.results import check_requirements

# The published columns, in order (numbers stay numbers: csv and json round-trip them).
COLUMNS = ("setting", "algorithm", "score", "mark", "rank", "published", "curve", "mean", "ci",
           "seed_mean", "seed_ci", "seeds", "test_episodes", "n", "budget", "steps",
           "train_time_s", "adapt_ms", "peak_mb", "hparams", "protocol", "run", "dataset",
           "test_dataset",
           "task_type", "ways", "shots", "queries", "metric", "group")
# What a reader sees in the text formats (md, latex, html): attrs["display"] names them
# (published, curve, hparams and protocol only where some row has one; curve: the rl
# adaptation curve, the score after 0, 1, ... steps, from runs with curve_steps).
DISPLAY = ("setting", "algorithm", "score", "rank", "published", "curve", "seeds", "test_episodes",
           "budget", "steps", "train_time_s", "adapt_ms", "peak_mb", "hparams", "protocol", "run")
OPTIONAL = ("published", "curve", "hparams", "protocol")


def leaderboard_frame(data: ReportData) -> pd.DataFrame:
    """The leaderboard as published: one row per algorithm x protocol group."""
    table = data.table
    if table.empty:
        frame = pd.DataFrame(columns=list(COLUMNS))
    else:
        frame = table.assign(score=[score_text(row) for row in table.to_dict("records")])
        frame = frame[[c for c in COLUMNS if c in frame]].reset_index(drop=True)
    frame.attrs["notes"] = footer(data)
    frame.attrs["display"] = [c for c in DISPLAY if c not in OPTIONAL or _filled(frame, c)]
    return frame


def _filled(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and bool(frame[column].fillna("").astype(str).str.len().any())


def footer(data: ReportData) -> list[str]:
    """The lines under a published table: notes, legend, ranks, then per run its protocol,
    environment and the command that reruns it."""
    lines = [*data.notes, legend(data.confidence, data.margin, data.alpha)]
    if data.ranks is not None:
        lines.append(data.ranks.describe())
    for run, record in data.runs.items():
        lines += run_lines(run, record.config, record.environment)
    return lines


def run_lines(run: str, config: dict[str, Any], environment: dict[str, Any]) -> list[str]:
    """Protocol, environment and rerun command of one run, a line each."""
    seeds = ",".join(map(str, config.get("seeds", [])))
    protocol = (f"run {run}: {config.get('episodes')} test episodes, {config.get('queries')} "
                f"queries per class, budget {config.get('budget')}, seeds {seeds}, "
                f"{config.get('val_episodes')} validation episodes x {config.get('val_points')}")
    commit = environment.get("git_commit") or "no git commit"
    machine = (f"environment: metabench {environment.get('metabench')} ({commit}), torch "
               f"{environment.get('torch')}, python {environment.get('python')}, device "
               f"{environment.get('device')} ({environment.get('device_name')})")
    return [protocol, machine, f"reproduce: {compare_command(config)}"]


def write_table(frame: pd.DataFrame, fmt: str, path: str | Path) -> Path:
    """Write a table through the reporter registered as ``fmt``, atomically."""
    reporters = registry.get_reporters()
    if fmt not in reporters:
        raise unknown_name_error("format", fmt, reporters)
    check_requirements(reporters[fmt])
    with atomic_path(Path(path)) as temporary:
        reporters[fmt].factory(frame, temporary)
    return Path(path)


def write_run_reports(results: str | Path, run: str, confidence: float = 0.95,
                      alpha: float = 0.05, margin: float = 0.0) -> list[Path]:
    """``report.html`` and ``leaderboard.md`` of one run, written to ``RESULTS/RUN/``."""
    # Deferred: the HTML report draws with matplotlib; a table alone never needs it.
    from metabench.reports.html import write_report

    folder = Path(results) / run
    data = build_report_data([folder], confidence=confidence, alpha=alpha, margin=margin)
    report = write_report(data, folder / "report.html")
    leaderboard = write_table(leaderboard_frame(data), "md", folder / "leaderboard.md")
    return [report, leaderboard]

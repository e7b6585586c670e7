"""What a leaderboard, a plot or a report reads: results from one or more stores, filtered,
pooled into protocol groups, and summarised into the leaderboard table.

Rows of several runs are compared only when their protocols match (data set, TaskSpec,
test episodes: count and seeds, budget, and for a time budget the device); an algorithm
found twice in a group keeps its newest complete run unless ``all_runs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from metabench.cell import domains_label
from metabench.config import Config, make_config
from metabench.errors import MetabenchError
from metabench.protocol import setting_label
from metabench.result_paths import resolve_results_paths
from metabench.stats import RankSummary
from metabench.store import RunRecord, Store

# One colour per algorithm, the same in every plot of a report (matplotlib's tab10, then tab20).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")


@dataclass
class Filters:
    """Which rows a leaderboard keeps (empty: all)."""

    datasets: Sequence[str] = ()
    ways: Sequence[int] = ()
    shots: Sequence[int] = ()
    algorithms: Sequence[str] = ()
    runs: Sequence[str] = ()


@dataclass
class ReportData:
    """Everything a leaderboard format, a plot or the HTML report reads.

    ``table`` has one row per protocol group x algorithm (columns: see
    :func:`metabench.reports.leaderboard.build_table`); ``episodes`` and ``cells`` are the
    rows it was computed from (only the runs kept), with ``run`` and ``store`` columns;
    ``runs`` maps a run id to its record (config, environment); ``colors`` gives each
    algorithm its colour; ``notes`` are one-line remarks (groups kept apart, seed intervals).
    """

    episodes: pd.DataFrame
    cells: pd.DataFrame
    table: pd.DataFrame
    runs: dict[str, RunRecord]
    ranks: RankSummary | None = None
    notes: list[str] = field(default_factory=list)
    colors: dict[str, str] = field(default_factory=dict)
    confidence: float = 0.95
    alpha: float = 0.05
    margin: float = 0.0

    @property
    def algorithms(self) -> list[str]:
        """The algorithms of the table, in colour order."""
        return list(self.colors)

    def config(self, run: str) -> Config:
        """The stored configuration of a run."""
        return make_config(self.runs[run].config)


def read_sources(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                        dict[str, RunRecord]]:
    """Episodes, cells and run records from results folders, store files or ``DIR/RUN`` ids."""
    from metabench.results import load_cells, load_results

    episodes: list[pd.DataFrame] = []
    cells: list[pd.DataFrame] = []
    runs: dict[str, RunRecord] = {}
    for resolved in resolve_results_paths(paths):
        path, run = resolved.location, resolved.run
        with Store.open_existing(path) as store:
            records = [store.run(run)] if run else store.runs()
        for record in records:
            label = _unique_run_label(record.id, runs, path)
            runs[label] = record
            episodes.append(load_results(path, record.id).assign(run=label, store=str(path)))
            cells.append(load_cells(path, record.id).assign(run=label, store=str(path)))
    if not runs:
        raise MetabenchError(f"no runs in {', '.join(map(str, paths))}; run metabench compare first")
    return pd.concat(episodes, ignore_index=True), pd.concat(cells, ignore_index=True), runs


def _unique_run_label(run: str, taken: dict[str, RunRecord], path: Path) -> str:
    return run if run not in taken else f"{path}/{run}"


def apply_filters(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows of an episodes or cells frame that pass the filters."""
    keep = pd.Series(True, index=frame.index)
    for column, wanted in (("dataset", filters.datasets), ("ways", filters.ways),
                           ("shots", filters.shots), ("algorithm", filters.algorithms),
                           ("run", filters.runs)):
        if wanted:
            keep &= frame[column].isin(list(wanted))
    return frame[keep]


def check_filters(cells: pd.DataFrame, filters: Filters) -> None:
    """A filter value that matches nothing is a mistake worth one line."""
    for column, wanted in (("dataset", filters.datasets), ("ways", filters.ways),
                           ("shots", filters.shots), ("algorithm", filters.algorithms),
                           ("run", filters.runs)):
        known = set(cells[column])
        for value in wanted:
            if value not in known:
                listed = ", ".join(str(v) for v in sorted(known, key=str))
                raise MetabenchError(f"--{column} {value!r} matches no result; known: {listed}")


def assign_colors(algorithms: Sequence[str]) -> dict[str, str]:
    """Each algorithm's colour, by sorted name so the same names get the same colours."""
    ordered = sorted(dict.fromkeys(algorithms))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(ordered)}


def setting_of(row: Any) -> str:
    """``glyphs 5w1s`` for a row with dataset, task_type, ways and shots; a cross-domain
    row (``test_dataset`` another data set) reads ``glyphs->omniglot 5w1s``."""
    domains = domains_label(row["dataset"], row.get("test_dataset"))
    return f"{domains} {setting_label(row['task_type'], row['ways'], row['shots'])}"

"""The ``compare`` and ``export`` commands: parse flags, call :mod:`metabench.api`, print."""

from __future__ import annotations

import math
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from metabench.plan import DEFAULT_BUDGET, LATEST

if TYPE_CHECKING:  # the API (pandas, scipy) loads only when a command runs
    import pandas as pd

    from metabench.api import RunOutcome

_LIST = "comma-separated"


@click.command("compare")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file of options (flags override it).")
@click.option("--algorithms", "-a", help=f"Algorithms, {_LIST} [maml,fomaml,protonet,reptile].")
@click.option("--datasets", "--dataset", "-d", "datasets", help=f"Data sets, {_LIST} [glyphs].")
@click.option("--ways", help=f"Classes per episode, {_LIST} [5].")
@click.option("--shots", help=f"Support examples per class, {_LIST} [1,5].")
@click.option("--queries", type=int, help="Query examples per class [15].")
@click.option("--episodes", type=int, help="Test episodes per cell [600].")
@click.option("--seeds", help=f"Seeds, {_LIST} [0].")
@click.option("--budget", help=f"Meta-training budget: episodes:N or time:30s|5m|1h "
                               f"[{DEFAULT_BUDGET}].")
@click.option("--backbone", help="Backbone for every algorithm [conv4; mlp for regression].")
@click.option("--set", "assignments", multiple=True, metavar="ALGO.NAME=VALUE",
              help="Set a hyperparameter (repeatable), e.g. maml.inner_lr=0.1.")
@click.option("--val-episodes", type=int, help="Validation episodes per evaluation [40].")
@click.option("--val-points", type=int, help="Validation evaluations over the budget [4].")
@click.option("--confidence", type=float, help="Confidence level of the intervals [0.95].")
@click.option("--margin", type=float,
              help="Smallest difference reported as significant (accuracy: 0.01 = 1 point) [0].")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where data sets live.")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Cache folder of built data sets (METABENCH_CACHE).")
@click.option("--download/--no-download", default=None, help="Download missing data sets.")
@click.option("--device", help="auto, cpu, cuda or cuda:N [auto].")
@click.option("--out", help="Results folder [results].")
@click.option("--resume", is_flag=False, flag_value=LATEST, default=None, metavar="[RUN]",
              help="Finish run RUN (id or DIR/ID), or alone: the latest run with this config.")
@click.option("--retry-failed", is_flag=True, help="With --resume, run failed cells again.")
@click.option("--backend", default="local", show_default=True, help="Where cells run.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def compare_command(config_file: str | None, assignments: tuple[str, ...], resume: str | None,
                    retry_failed: bool, backend: str, progress: bool, **flags: Any) -> None:
    """Compare algorithms on the same episodes under the same budget; print the leaderboard.

    Exits with status 1 when a cell failed (its reason is stored and printed).
    """
    from metabench import api

    options = {**flags, "hparams": list(assignments) or None}
    try:
        with _sigterm_as_interrupt():
            outcome = api.run_comparison(options, config_file, resume, retry_failed, progress,
                                         backend)
    except KeyboardInterrupt:
        click.echo("interrupted: finished cells are stored; resume with "
                   "`metabench compare --resume` and the same options", err=True)
        raise
    print_outcome(outcome)
    if outcome.failed:
        raise SystemExit(1)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler stopping the job) like Ctrl-C: the run is marked interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_outcome(outcome: RunOutcome, console: Console | None = None) -> None:
    """The leaderboard, ranks across settings, failed and skipped cells, where the results are."""
    from metabench import api

    # The terminal's width, or 120 columns when piped (as the other commands do).
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    config = outcome.config
    table = api.leaderboard(outcome.episodes, outcome.cells, config.confidence, config.margin)
    # Title, legend and status lines are plain lines, never wrapped, so they can be searched for.
    if len(table):
        click.echo(f"metabench compare · run {outcome.run} · budget {config.budget} · "
                   f"{config.episodes} test episodes")
        console.print(leaderboard_table(table))
        click.echo(legend(config.confidence, config.margin))
    ranks = api.ranks_across_settings(table)
    if ranks is not None:
        click.echo(ranks.describe())
    for row in outcome.cells.itertuples():
        if row.status != "ok":
            click.echo(f"{row.status}: {row.key}: {row.reason}")
    click.echo(f"run {outcome.run} in {outcome.store} ({outcome.ran} cells run now)")


def legend(confidence: float, margin: float) -> str:
    """What the marks and columns of the leaderboard mean."""
    return (
        f"± {confidence:.0%} t-interval; * significantly worse than the best, = not "
        f"significantly different (paired t and Wilcoxon, Holm, α 0.05, margin {margin:g}); "
        "train s: meta-training time; ms/ep: adaptation time per test episode (median); "
        "MB: peak memory"
    )


def leaderboard_table(table: pd.DataFrame) -> Table:
    """The leaderboard as a rich table."""
    view = Table(box=box.SIMPLE_HEAD)
    view.add_column("algorithm", no_wrap=True)
    view.add_column("setting", no_wrap=True)
    view.add_column("score", justify="right", no_wrap=True)
    for name in ("steps", "train s", "ms/ep", "MB"):
        view.add_column(name, justify="right", no_wrap=True)
    for row in table.to_dict("records"):
        view.add_row(*_leaderboard_cells(row))
    return view


def _leaderboard_cells(row: dict[str, Any]) -> list[str]:
    from metabench.api import format_mean_ci

    setting = f"{row['dataset']} {row['ways']}w{row['shots']}s"
    if row["metric"] != "accuracy":
        setting = f"{row['dataset']} {row['shots']}-shot"
    score = format_mean_ci(row["mean"], row["ci"], row["metric"])
    score = f"{score} %" if row["metric"] == "accuracy" else f"mse {score}"
    score = f"{score} {row['mark'] or ' '}"
    peaks = [_number(row.get("peak_train_mb")), _number(row.get("peak_eval_mb"))]
    peak = max((p for p in peaks if not math.isnan(p)), default=math.nan)
    return [
        str(row["algorithm"]), setting, score, _fmt(row.get("steps"), "{:.0f}"),
        _fmt(row.get("train_time_s"), "{:.1f}"), _fmt(row.get("adapt_ms"), "{:.2f}"),
        _fmt(peak, "{:.0f}"),
    ]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: Any, pattern: str) -> str:
    number = _number(value)
    return "-" if math.isnan(number) else pattern.format(number)


@click.command("export")
@click.argument("results", default="results", required=False)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="File format (parquet needs pyarrow).")
@click.option("--output", "-o", help="File to write [RESULTS/<table>.<format>].")
@click.option("--run", help="Only this run (default: every run).")
@click.option("--table", type=click.Choice(["episodes", "cells"]), default="episodes",
              show_default=True, help="One row per test episode, or one per cell.")
def export_command(results: str, fmt: str, output: str | None, run: str | None,
                   table: str) -> None:
    """Write a results store's episodes (or cells) as CSV or Parquet."""
    from metabench import api

    path = api.export(results, fmt, output, run, table)
    click.echo(f"wrote {path}")

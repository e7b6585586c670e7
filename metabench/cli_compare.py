"""The ``compare`` and ``export`` commands: parse flags, call the library, print."""

from __future__ import annotations

from typing import Any

import click

from metabench.cli_common import (
    CONFIG_FILE,
    PROGRESS,
    comparison_options,
    library_options,
    print_outcome,
    write_reports,
)
from metabench.config import LATEST


@click.command("compare")
@CONFIG_FILE
@comparison_options("compare")
@click.option("--resume", is_flag=False, flag_value=LATEST, default=None, metavar="[RUN]",
              help="Finish run RUN (id or DIR/ID), or alone: the latest run with this config.")
@click.option("--retry-failed", is_flag=True,
              help="With --resume (required), run failed cells again.")
@click.option("--report/--no-report", default=True,
              help="Write report.html and leaderboard.md into RESULTS/RUN/ when the run ends.")
@PROGRESS
def compare_command(config_file: str | None, resume: str | None, retry_failed: bool,
                    progress: bool, report: bool, **flags: Any) -> None:
    """Compare algorithms on the same episodes under the same budget; print the leaderboard.

    Exits with status 1 when a cell failed (its reason is stored and printed).
    """
    from metabench.session import RunInterrupted, run_comparison

    options = library_options("compare", flags)
    try:
        outcome = run_comparison(options, config_file, resume, retry_failed, progress)
    except RunInterrupted as stop:
        click.echo(f"interrupted: run {stop.run}: finished cells are stored; resume with "
                   "`metabench compare --resume` and the same options", err=True)
        raise
    print_outcome(outcome)
    if report:
        write_reports(outcome)
    if outcome.failed:
        raise SystemExit(1)


@click.command("export")
@click.argument("results", default="results", required=False)
@click.option("--format", "fmt", default="csv", show_default=True, metavar="FORMAT",
              help="A registered format: csv, parquet (needs pyarrow), json, md, latex, or a "
                   "plugin's (metabench plugins lists them).")
@click.option("--output", "-o", help="File to write [RESULTS/<table>.<format>].")
@click.option("--run", help="Only this run (default: every run).")
@click.option("--table", type=click.Choice(["episodes", "cells"]), default="episodes",
              show_default=True, help="One row per test episode, or one per cell.")
def export_command(results: str, fmt: str, output: str | None, run: str | None,
                   table: str) -> None:
    """Write a results store's episodes (or cells) in any registered format."""
    from metabench.results import export

    path = export(results, fmt, output, run, table)
    click.echo(f"wrote {path}")

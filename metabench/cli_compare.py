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

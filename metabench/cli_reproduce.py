"""The ``reproduce`` command: list paper presets, or run one and print it against the paper."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from metabench.cli_common import (
    PROGRESS,
    comparison_options,
    library_options,
    make_console,
    print_outcome,
    write_reports,
)
from metabench.config import LATEST

if TYPE_CHECKING:
    from metabench.presets import Comparison
    from metabench.reproduction import Reproduction


@click.command("reproduce")
@click.argument("name", required=False)
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Share of the paper's training budget to run (0.05: 5%, for a CPU).")
@click.option("--only", metavar="ALGO[,ALGO]/SETTING[,SETTING]",
              help="Run part of the preset, e.g. protonet/5w1s, maml,fomaml or /20w5s.")
@click.option("--json", "as_json", is_flag=True,
              help="List presets as JSON; with NAME, print the result rows as JSON (the rest "
                   "goes to stderr).")
@click.option("--estimate/--no-estimate", default=True,
              help="Time a few steps of each cell first and print the estimated wall time.")
@click.option("--dry-run", is_flag=True, help="Print the plan and the estimate; run nothing.")
@comparison_options("reproduce")
@click.option("--resume", is_flag=False, flag_value=LATEST, default=None, metavar="[RUN]",
              help="Finish run RUN, or alone: the latest run of this preset and options.")
@PROGRESS
@click.option("--report/--no-report", default=True,
              help="Write report.html and leaderboard.md into RESULTS/RUN/ at the end.")
def reproduce_command(name: str | None, scale: float, only: str | None, as_json: bool,
                      estimate: bool, dry_run: bool, resume: str | None, progress: bool,
                      report: bool, **flags: Any) -> None:
    """Without NAME, list the paper presets; with NAME, run it and print published and
    measured results side by side with a verdict.

    Exits with status 1 when a cell failed.
    """
    if name is None:
        _list_presets(as_json)
        return
    from metabench.reproduction import preset_config, reproduce
    from metabench.session import RunInterrupted

    options = {key: value for key, value in library_options("reproduce", flags).items()
               if value is not None}
    config = preset_config(name, scale, only, options)
    _print_plan(name, config, err=as_json)
    if estimate or dry_run:
        _print_estimate(config, err=as_json)
    if dry_run:
        return
    try:
        result = reproduce(name, scale, only, options, resume, progress)
    except RunInterrupted as stop:
        click.echo(f"interrupted: run {stop.run}: finished cells are stored; resume with "
                   f"`metabench reproduce {name} --resume` and the same options", err=True)
        raise
    if as_json:  # the rows alone on stdout, for scripts
        click.echo(json.dumps([row.as_dict() for row in result.rows], indent=2))
    else:
        print_outcome(result.outcome)
        _print_comparisons(result)
    if report:
        write_reports(result.outcome)
    if result.outcome.failed:
        raise SystemExit(1)


def _list_presets(as_json: bool) -> None:
    from metabench.presets import describe
    from metabench.registry import all_presets

    listing = [describe(name, preset) for name, preset in all_presets().items()]
    if as_json:
        click.echo(json.dumps(listing, indent=2, default=str))
        return
    table = Table(title="metabench reproduce: paper presets")
    table.add_column("name", no_wrap=True)
    # Paper and settings wrap but keep a readable width; at 120 columns (piped) the long
    # budgets of some presets would otherwise squeeze them to nothing.
    table.add_column("paper", min_width=16)
    table.add_column("algorithms")
    table.add_column("data", no_wrap=True)
    table.add_column("settings", min_width=9)
    table.add_column("budget")
    needs: dict[str, list[str]] = {}
    for row in listing:
        mark = " *" if row["requires"] else ""
        table.add_row(*[escape(text) for text in (
            row["name"] + mark, row["source"].split(" (")[0], ", ".join(row["algorithms"]),
            ", ".join(row["datasets"]), " ".join(row["settings"]), row["budget"])])
        if row["requires"]:
            needs.setdefault(row["requires"], []).append(row["name"])
    make_console().print(table)
    for requirement in needs:
        click.echo(f"* needs {requirement}")
    click.echo("run one: metabench reproduce NAME [--scale F] [--only ALGO/SETTING]; "
               "see docs/reproduce.md")


def _print_plan(name: str, config: Any, err: bool = False) -> None:
    from metabench.cell import domains_label
    from metabench.presets import settings_of

    scale = f" at {100 * config.scale:g}% of the paper's budget" if config.scale != 1 else ""
    data = ", ".join(domains_label(d, config.test_dataset) for d in config.datasets)
    click.echo(f"metabench reproduce {name}{scale}: {', '.join(config.algorithms)} on {data} "
               f"{' '.join(settings_of(config))}, budget {config.budget_text()}, "
               f"{config.episodes} test episodes", err=err)


def _print_estimate(config: Any, err: bool = False) -> None:
    from metabench.estimate import format_duration
    from metabench.reproduction import estimate

    def probing(cell: Any) -> None:
        click.echo(f"  timing a few steps: {cell.algorithm} {cell.setting}", err=True)

    result = estimate(config, probing)
    here = format_duration(result.seconds)
    full = format_duration(result.reference_seconds)
    click.echo(f"estimated wall time on this device: {here} for {result.cells} cells "
               f"(from {result.probes} timed probes); at --scale 1: {full}", err=err)


def _print_comparisons(result: Reproduction) -> None:
    from metabench.presets import VERDICT_RULE

    if not result.rows:
        click.echo("no result of this run has a published counterpart in the preset")
        return
    table = Table(title=f"{result.name}: {result.preset.title} ({result.preset.source})")
    for column in ("setting", "algorithm"):
        table.add_column(column, no_wrap=True)
    for column in ("published", "measured", "difference"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict")
    for row in result.rows:
        table.add_row(*[escape(text) for text in
                        _comparison_cells(row, result.outcome.config.confidence)])
    make_console().print(table)
    sources = sorted({row.published.source for row in result.rows if row.published.source})
    if sources:
        click.echo(f"published: {'; '.join(sources)}")
    if any(row.step is not None for row in result.rows):
        click.echo("rows 'after k steps' are points of the adaptation curve (curve_steps); the "
                   "setting's own row is its main score, the return after one adaptation")
    click.echo(VERDICT_RULE)


def _comparison_cells(row: Comparison, confidence: float) -> list[str]:
    measured = f"{row.metric.format_mean_ci(row.mean, row.ci)} ({100 * confidence:g}% CI)"
    setting = row.setting if row.step is None else f"{row.setting}, after {row.step} steps"
    return [setting, row.algorithm, row.published.text(), measured,
            f"{row.difference:+.2f}" if row.metric.percent else f"{row.difference:+.3g}",
            row.verdict.text()]

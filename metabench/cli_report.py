"""The commands that read results (``leaderboard``, ``plot``, ``report``, ``export``): parse
flags, call the library, print. Each takes results paths of one grammar
(:mod:`metabench.result_paths`): a results folder, a store file or DIR/RUN."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from metabench.cli_common import make_console
from metabench.errors import MetabenchError

_LIST = "comma-separated"


def _results_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Filters and statistics options shared by the three commands."""
    options = [
        click.option("--dataset", "--datasets", "datasets", help=f"Only these data sets ({_LIST})."),
        click.option("--ways", help=f"Only these ways ({_LIST})."),
        click.option("--shots", help=f"Only these shots ({_LIST})."),
        click.option("--algorithms", "-a", help=f"Only these algorithms ({_LIST})."),
        click.option("--run", "runs", help=f"Only these run ids ({_LIST})."),
        click.option("--all-runs", is_flag=True,
                     help="Keep every run of an algorithm in a protocol group (default: newest "
                          "complete run)."),
        click.option("--confidence", type=float, default=0.95, show_default=True,
                     help="Confidence level of the intervals."),
        click.option("--alpha", type=float, default=0.05, show_default=True,
                     help="Significance level of the paired tests."),
        click.option("--margin", type=float, default=0.0, show_default=True,
                     help="Smallest difference reported as significant."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _data(paths: tuple[str, ...], datasets: str | None, ways: str | None, shots: str | None,
          algorithms: str | None, runs: str | None, all_runs: bool, confidence: float,
          alpha: float, margin: float) -> Any:
    from metabench.api import _check_statistics, _filters
    from metabench.reports.leaderboard import build_report_data

    _check_statistics(confidence, alpha, margin)
    filters = _filters(datasets, ways, shots, algorithms, runs)
    return build_report_data(list(paths) or ["results"], filters, all_runs, confidence, alpha,
                             margin)


@click.command("leaderboard")
@click.argument("paths", nargs=-1)
@_results_options
@click.option("--format", "fmt", metavar="FORMAT",
              help="Write through a registered format (md, csv, latex, html, json, or a "
                   "plugin's) instead of printing the terminal table.")
@click.option("--output", "-o", help="File to write ('-': stdout) [stdout for md, csv, json, latex; "
                                      "else required].")
def leaderboard_command(paths: tuple[str, ...], fmt: str | None, output: str | None,
                        **options: Any) -> None:
    """Leaderboard of one or more results folders, store files or DIR/RUN ids [results].

    Rows of several runs are compared only when their protocols match (data set, task,
    test episodes and seeds, budget, device for a time budget).
    """
    from metabench.reports.publish import leaderboard_frame, write_table

    data = _data(paths, **options)
    frame = leaderboard_frame(data)
    if fmt is None and output is None:
        _print_terminal(data)
        return
    if output == "-":  # the usual name of standard output
        output = None
    fmt = fmt or _format_of(output)
    if output is None:
        if fmt not in _STDOUT_FORMATS:
            raise MetabenchError(f"--format {fmt} needs -o FILE; only "
                                 f"{', '.join(_STDOUT_FORMATS)} print to standard output")
        _print_file(frame, fmt)
        return
    click.echo(f"wrote {write_table(frame, fmt, output)}")


_STDOUT_FORMATS = ("md", "csv", "json", "latex")


def _format_of(output: str | None) -> str:
    suffix = (output or "").rsplit(".", 1)[-1].lower()
    return {"tex": "latex", "htm": "html", "markdown": "md"}.get(suffix, suffix)


def _print_file(frame: Any, fmt: str) -> None:
    import tempfile
    from pathlib import Path

    from metabench.reports.publish import write_table

    with tempfile.TemporaryDirectory() as folder:
        path = write_table(frame, fmt, Path(folder) / f"leaderboard.{fmt}")
        try:
            click.echo(path.read_text().rstrip("\n"))
        except UnicodeDecodeError:
            raise click.UsageError(f"--format {fmt} is binary; give -o FILE") from None


def _print_terminal(data: Any) -> None:
    from metabench.reports.leaderboard import legend
    from metabench.reports.per_source import per_source_text
    from metabench.reports.terminal import leaderboard_table

    if data.table.empty:
        click.echo("no results match")
        return
    make_console().print(leaderboard_table(data.table))
    for line in [*data.notes, legend(data.confidence, data.margin, data.alpha)]:
        click.echo(line)
    if data.ranks is not None:
        click.echo(data.ranks.describe())
    for line in per_source_text(data.table):
        click.echo(line)


@click.command("plot")
@click.argument("paths", nargs=-1)
@_results_options
@click.option("--kind", "kinds", multiple=True, metavar="NAME",
              help="Only this plot kind (repeatable; metabench plugins lists them).")
@click.option("--output", "-o", "folder", default="plots", show_default=True,
              help="Folder for the PNG and SVG files.")
def plot_command(paths: tuple[str, ...], kinds: tuple[str, ...], folder: str,
                 **options: Any) -> None:
    """Write the plots of one or more runs as PNG and SVG files [results]."""
    from metabench.reports.plots import save_plots

    for path in save_plots(_data(paths, **options), folder, list(kinds) or None):
        click.echo(f"wrote {path}")


@click.command("report")
@click.argument("paths", nargs=-1)
@_results_options
@click.option("--output", "-o", help="The HTML file to write [RESULTS/report.html, or "
                                      "RESULTS/RUN/report.html for one run].")
def report_command(paths: tuple[str, ...], output: str | None, **options: Any) -> None:
    """Write one self-contained HTML report (leaderboard, plots, protocol, environment)."""
    from metabench.api import default_report_path
    from metabench.reports.html import write_report

    target = output or default_report_path(list(paths) or ["results"])
    click.echo(f"wrote {write_report(_data(paths, **options), target)}")


@click.command("export")
@click.argument("results", default="results", required=False)
@click.option("--format", "fmt", default="csv", show_default=True, metavar="FORMAT",
              help="A registered format: csv, parquet (needs pyarrow), json, md, latex, or a "
                   "plugin's (metabench plugins lists them).")
@click.option("--output", "-o", help="File to write [RESULTS/<table>.<format>, or "
                                      "RESULTS/RUN/<table>.<format> for one DIR/RUN].")
@click.option("--run", help="Only this run (default: every run; RESULTS may name it as DIR/RUN).")
@click.option("--table", type=click.Choice(["episodes", "cells"]), default="episodes",
              show_default=True, help="One row per test episode, or one per cell.")
def export_command(results: str, fmt: str, output: str | None, run: str | None,
                   table: str) -> None:
    """Write the episodes (or cells) of a results folder, store file or DIR/RUN in any
    registered format [results]."""
    from metabench.results import export

    path = export(results, fmt, output, run, table)
    click.echo(f"wrote {path}")

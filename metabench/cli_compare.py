"""The ``compare`` and ``export`` commands: parse flags, call the library, print."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from metabench.config import DEFAULT_BUDGET, LATEST

if TYPE_CHECKING:  # the API (pandas, scipy) loads only when a command runs

    from metabench.session import RunOutcome

_LIST = "comma-separated"


# What is trained and validated: the options metabench compare and metabench tune share.
_TRAINING_OPTIONS = (
    click.option("--config", "config_file", type=click.Path(dir_okay=False),
                 help="TOML file of options (flags override it)."),
    click.option("--algorithms", "-a", help=f"Algorithms, {_LIST} [maml,fomaml,protonet,reptile]."),
    click.option("--datasets", "--dataset", "-d", "datasets", help=f"Data sets, {_LIST} [glyphs]."),
    click.option("--dataset-option", "dataset_options", multiple=True,
                 metavar="DATASET.NAME=VALUE",
                 help="Set a data set option (repeatable), e.g. omniglot.rotations=true."),
    click.option("--variant", "variants", multiple=True, metavar="LABEL=ALGORITHM",
                 help="Run ALGORITHM a second time as LABEL (repeatable; list LABEL in "
                      "--algorithms, set its hyperparameters with --set LABEL.NAME=VALUE)."),
    click.option("--ways", help=f"Classes per episode, {_LIST}, or any (with --shots any: the "
                                "Meta-Dataset sampler, docs/multisource.md) [5]."),
    click.option("--shots", help=f"Support examples per class, {_LIST}, or any [1,5]."),
    click.option("--queries", type=int, help="Query examples per class [15]."),
    click.option("--seeds", help=f"Seeds, {_LIST} [0]."),
    click.option("--budget", help=f"Meta-training budget: episodes:N, steps:N or time:30s|5m|1h "
                                  f"[{DEFAULT_BUDGET}]."),
    click.option("--backbone", help="Backbone for every algorithm [conv4; mlp for regression]."),
    click.option("--set", "assignments", multiple=True, metavar="ALGO.NAME=VALUE",
                 help="Set a hyperparameter (repeatable), e.g. maml.inner_lr=0.1."),
    click.option("--val-episodes", type=int, help="Validation episodes per evaluation [40]."),
    click.option("--val-points", type=int, help="Validation evaluations over the budget [4]."),
    click.option("--checkpoint", type=click.Choice(["best", "last"]),
                 help="Test the best weights on validation, or the last ones [best]."),
)
# Where and how it runs (results folder, data, device, backend).
_RUNTIME_OPTIONS = (
    click.option("--data-root", type=click.Path(file_okay=False), help="Where data sets live."),
    click.option("--cache-dir", type=click.Path(file_okay=False),
                 help="Cache folder of built data sets (METABENCH_CACHE)."),
    click.option("--download/--no-download", default=None, help="Download missing data sets."),
    click.option("--device", help="auto, cpu, cuda or cuda:N [auto]."),
    click.option("--out", help="Results folder [results]."),
    click.option("--backend", help="Where cells run: local, ray, or a plugin's [local]."),
    click.option("--address", help="Ray: auto, HOST:PORT or ray://HOST:PORT [a local instance]."),
    click.option("--threads", "--cpus-per-cell", "cpus_per_cell", type=int,
                 help="Torch threads of each cell, the same on every backend so results match "
                      "(Ray reserves as many CPUs per cell) [1]."),
    click.option("--gpus-per-cell", type=float, help="Ray: GPUs per cell, fractions share one [0]."),
    click.option("--max-retries", type=int,
                 help="Ray: retries of a cell whose worker died (killed, out of memory) [2]."),
    click.option("--progress/--no-progress", default=True, help="Show progress bars."),
)


def training_options(command: Any) -> Any:
    """Add the options that say what is trained and validated (compare and tune share them)."""
    for option in reversed(_TRAINING_OPTIONS):
        command = option(command)
    return command


def runtime_options(command: Any) -> Any:
    """Add the options that say where and how cells run."""
    for option in reversed(_RUNTIME_OPTIONS):
        command = option(command)
    return command


def flag_options(flags: dict[str, Any], assignments: tuple[str, ...]) -> dict[str, Any]:
    """The library options of the shared flags (repeatable ones as lists, --plugin modules)."""
    options = {**flags, "hparams": list(assignments) or None, "plugins": _plugin_modules()}
    for key in ("dataset_options", "variants"):
        options[key] = list(options[key]) or None
    return options


@click.command("compare")
@training_options
@click.option("--test-dataset", help="Test on this data set instead (cross-domain: meta-train and "
                                     "validate on --datasets); a comma-separated list tests on "
                                     "each (a multi-source A+B also tests on A and B).")
@click.option("--sampler-option", "sampler_options", multiple=True, metavar="NAME=NUMBER",
              help="An option of the any-way any-shot sampler (repeatable), e.g. max_ways=20 "
                   "(docs/multisource.md).")
@click.option("--episodes", type=int, help="Test episodes per cell [600].")
@click.option("--tuned", is_flag=False, flag_value=LATEST, default=None, metavar="[TUNING]",
              help="Use the hyperparameters metabench tune selected: tuning TUNING (id or "
                   "DIR/ID), or alone: the latest tuning of these algorithms and settings.")
@click.option("--confidence", type=float, help="Confidence level of the intervals [0.95].")
@click.option("--alpha", type=float, help="Significance level of the paired tests [0.05].")
@click.option("--margin", type=float,
              help="Smallest difference reported as significant (accuracy: 0.01 = 1 point) [0].")
@click.option("--resume", is_flag=False, flag_value=LATEST, default=None, metavar="[RUN]",
              help="Finish run RUN (id or DIR/ID), or alone: the latest run with this config.")
@click.option("--retry-failed", is_flag=True,
              help="With --resume (required), run failed cells again.")
@click.option("--report/--no-report", default=True,
              help="Write report.html and leaderboard.md into RESULTS/RUN/ when the run ends.")
@runtime_options
def compare_command(config_file: str | None, assignments: tuple[str, ...], resume: str | None,
                    retry_failed: bool, progress: bool, report: bool, **flags: Any) -> None:
    """Compare algorithms on the same episodes under the same budget; print the leaderboard.

    Exits with status 1 when a cell failed (its reason is stored and printed).
    """
    from metabench.session import RunInterrupted, run_comparison

    options = flag_options(flags, assignments)
    options["sampler_options"] = list(options.get("sampler_options") or ()) or None
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


def print_outcome(outcome: RunOutcome, console: Console | None = None) -> None:
    """The leaderboard, ranks across settings, failed and skipped cells, where the results are."""
    from metabench.reports.leaderboard import (
        attach_published,
        leaderboard,
        legend,
        ranks_across_settings,
    )
    from metabench.reports.per_source import per_source_text
    from metabench.reports.terminal import leaderboard_table

    # The terminal's width, or 120 columns when piped (as the other commands do).
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    config = outcome.config
    table = leaderboard(outcome.episodes, outcome.cells, config.confidence, config.margin,
                        config.alpha)
    table = attach_published(table, {outcome.run: config})
    # Title, legend and status lines are plain lines, never wrapped, so they can be searched for.
    if len(table):
        click.echo(f"metabench compare · run {outcome.run} · budget {config.budget} · "
                   f"{config.episodes} test episodes")
        console.print(leaderboard_table(table))
        click.echo(legend(config.confidence, config.margin, config.alpha))
    ranks = ranks_across_settings(table, config.alpha)
    if ranks is not None:
        click.echo(ranks.describe())
    for line in per_source_text(table):
        click.echo(line)
    for row in outcome.cells.itertuples():
        if row.status != "ok":
            click.echo(f"{row.status}: {row.key}: {row.reason}")
    click.echo(f"run {outcome.run} in {outcome.store} ({outcome.ran} cells run now)")


def _plugin_modules() -> list[str] | None:
    """The ``metabench --plugin`` modules: part of the run's config, so workers on other
    machines and the rebuilt command load them too."""
    context = click.get_current_context(silent=True)
    parent = context.parent if context else None
    modules = list(parent.params.get("plugins") or ()) if parent else []
    return modules or None


def write_reports(outcome: RunOutcome) -> None:
    """The run's HTML report and Markdown leaderboard, and where they are."""
    from metabench.reports.publish import write_run_reports

    config = outcome.config
    for path in write_run_reports(outcome.store.parent, outcome.run, config.confidence,
                                  config.alpha, config.margin):
        click.echo(f"wrote {path}")


"""What the commands share: the console, the flags built from :data:`metabench.options.OPTIONS`,
the ``--plugin`` modules, and printing a finished run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from metabench.config import LATEST
from metabench.options import (
    CHOICE,
    FLOAT,
    INT,
    OPTIONAL,
    PAIRS,
    PATH,
    SWITCH,
    Option,
    from_flags,
    options_of,
)

if TYPE_CHECKING:  # the API (pandas, scipy) loads only when a command runs
    from metabench.session import RunOutcome

# Options of the commands that are not the comparison's (those are metabench.options).
CONFIG_FILE = click.option("--config", "config_file", type=click.Path(dir_okay=False),
                           help="TOML file of options (flags override it).")
PROGRESS = click.option("--progress/--no-progress", default=True, help="Show progress bars.")


def make_console() -> Console:
    """A console for tables: the terminal's width, or 120 columns when output is piped."""
    return Console() if sys.stdout.isatty() else Console(width=120)


def click_option(option: Option, command: str) -> Callable[[Any], Any]:
    """The click option of ``option`` in ``command`` (its value under ``option.name``)."""
    text = option.help_for(command)
    if option.kind == SWITCH:
        return click.option(option.flag, option.name, default=None, help=text)
    if option.kind == PAIRS:
        return click.option(*option.flags, option.name, multiple=True, metavar=option.metavar,
                            help=text)
    if option.kind == OPTIONAL:
        return click.option(*option.flags, option.name, is_flag=False, flag_value=LATEST,
                            default=None, metavar=option.metavar, help=text)
    kinds: dict[str, Any] = {INT: int, FLOAT: float, PATH: click.Path(file_okay=False),
                             CHOICE: click.Choice(list(option.choices))}
    return click.option(*option.flags, option.name, type=kinds.get(option.kind),
                        metavar=option.metavar, help=text)


def comparison_options(command: str) -> Callable[[Any], Any]:
    """Add the flags of every option ``command`` takes, in the definition's order."""
    def decorate(function: Any) -> Any:
        for option in reversed(options_of(command)):
            function = click_option(option, command)(function)
        return function
    return decorate


def library_options(command: str, params: dict[str, Any]) -> dict[str, Any]:
    """The options a command's flags give the library, with the ``--plugin`` modules."""
    return {**from_flags(command, params), "plugins": plugin_modules()}


def plugin_modules() -> list[str] | None:
    """The ``metabench --plugin`` modules: part of the run's config, so workers on other
    machines and the rebuilt command load them too."""
    context = click.get_current_context(silent=True)
    parent = context.parent if context else None
    modules = list(parent.params.get("plugins") or ()) if parent else []
    return modules or None


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

    console = console or make_console()
    config = outcome.config
    table = leaderboard(outcome.episodes, outcome.cells, config.confidence, config.margin,
                        config.alpha)
    table = attach_published(table, {outcome.run: config})
    # Title, legend and status lines are plain lines, never wrapped, so they can be searched for.
    if len(table):
        click.echo(f"metabench compare · run {outcome.run} · budget {config.budget.label} · "
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


def write_reports(outcome: RunOutcome) -> None:
    """The run's HTML report and Markdown leaderboard, and where they are."""
    from metabench.reports.publish import write_run_reports

    config = outcome.config
    for path in write_run_reports(outcome.store.parent, outcome.run, config.confidence,
                                  config.alpha, config.margin):
        click.echo(f"wrote {path}")
